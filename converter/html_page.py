"""What the self-contained pages of ``ckpt inspect --html`` and ``ckpt diff --html`` share: the
document around them, its style, the scope-tree script, the data embedding and the atomic write.

A page fetches nothing (its Content-Security-Policy allows no network), and every name reaches
it HTML-escaped or through ``textContent``; the tree travels as JSON escaped so that no
``</script>`` in a name can end its script element. The tree script renders a scope's rows only
when it is opened, filters by a part of a name or a glob, and acts on the URL fragment
(``#expand=dense&filter=kernel``), so a link or a headless browser can open a page in a given
state.

A tree node is a JSON array ``[name, *, *, *, tensors, extra, children?]``: the page fills the
middle and ``extra`` (0 or an object; ``r`` is a raw key shown beside the name and searched
too) as it likes, and gives the script the functions that draw its columns
(:data:`TREE_JS`).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from .outputs import outputs


def json_for_script(value: Any) -> str:
    """JSON that an HTML parser cannot end early: ``<``, ``>`` and ``&`` as escapes."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def document(title: str, body: list[str], *, data: Any, script: str, css: str = "") -> str:
    """A whole page: ``body``'s HTML, ``data`` as the JSON the tree script reads, the tree
    script and then ``script`` (the page's own part, which calls ``treeView``)."""
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        # No network: nothing may be fetched, whatever a name in the page says.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        f"<title>{html.escape(title)}</title><style>{CSS}{css}</style></head><body>",
        *body,
        f"<script type=\"application/json\" id=\"data\">{json_for_script(data)}</script>",
        f"<script>{TREE_JS}{script}</script></body></html>\n",
    ])


def tree_section(heading: str, columns: list[str], placeholder: str, controls: str = "") -> str:
    """The section holding the tree: its heading, the filter box (and ``controls``, HTML),
    the header row of ``columns`` (the first is the name's)."""
    first, *rest = columns
    cells = f'<span class="nm">{html.escape(first)}</span>' + "".join(
        f"<span>{html.escape(c)}</span>" for c in rest)
    return (f"<section id=\"scopes\"><h2>{html.escape(heading)}</h2>"
            f"<input id=\"q\" type=\"search\" placeholder=\"{html.escape(placeholder)}\" "
            f"autocomplete=\"off\"> {controls}<span id=\"count\"></span>"
            f"<div class=\"hd\">{cells}</div><div id=\"tree\"></div></section>")


def write(text: str, path: str | os.PathLike[str], *, force: bool = False) -> int:
    """Write a page atomically (temporary name, then rename); an existing file is replaced
    only with ``force``. Returns its size in bytes."""
    data = text.encode("utf-8", "backslashreplace")
    with outputs(force) as out:
        out.new(Path(path)).write_bytes(data)
    return len(data)


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0;word-break:break-all}h2{font-size:1.1em;margin:1.2em 0 .4em}
.sum{margin:.2em 0 1em;color:#444}table{border-collapse:collapse}
th,td{text-align:left;padding:2px 10px 2px 0;vertical-align:top}th{color:#555;font-weight:600}
pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto}
#q{width:26em;padding:4px 6px;font:inherit}#count{color:#666}
.hd,.r{display:grid;gap:8px;align-items:center}
.hd{font-weight:600;color:#555;border-bottom:1px solid #ccc;margin-top:8px;padding:2px 0}
.r{padding:1px 0;border-bottom:1px solid #eee}.r:hover{background:#eef4ff}
.r>span{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.tg{display:inline-block;width:1.1em;cursor:pointer;color:#36c;user-select:none}
.leaf .tg{cursor:default;color:#bbb}.nm b{font-weight:600}.raw{color:#888;margin-left:.5em}
.sl{color:#a60}.k{color:#666}.more{color:#888;font-style:italic;padding:2px 0}
small{color:#777;font-size:11px}.hide{display:none}
"""

# treeView(make): make(data, helpers) returns the page's part, an object with
#   own(node): whether the node is itself a tensor that counts (under the page's own filter);
#   cells(row, nameCell, node, extra): add the row's columns;
#   and optionally restricted() (the page's own filter is on), filtered(test or null) (the name
#   filter changed), init(fragment arguments).
# Rows are made on demand: opening a scope renders its children only. Names go in through
# textContent, never innerHTML.
TREE_JS = r"""
function treeView(make){
"use strict";
var D=JSON.parse(document.getElementById("data").textContent),SEP=D.sep;
var tree=document.getElementById("tree"),q=document.getElementById("q"),
count=document.getElementById("count");
var LIMIT=2000,match=null,open=new Set([""]);
function fmt(n){return n.toLocaleString("en-US");}
function hb(n){var u=["B","KiB","MiB","GiB","TiB"],i=0;while(n>=1024&&i<4){n/=1024;i++;}
return i?n.toFixed(1)+" "+u[i]:n+" B";}
function pathOf(parent,name){return parent?parent+SEP+name:name;}
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;
if(text!==undefined)e.textContent=text;return e;}
var V=make(D,{fmt:fmt,hb:hb,el:el,refresh:function(){apply();}});
function regex(text){
  // A glob when it has * or ?: * and ? match any characters, "/" included.
  if(!/[*?]/.test(text))return null;
  var s="";for(var i=0;i<text.length;i++){var c=text[i];
    s+=c==="*"?".*":c==="?"?".":c.replace(/[\\^$.|+(){}\[\]]/g,"\\$&");}
  return new RegExp("^"+s+"$","i");
}
// A scope that matches brings all it holds; hits count tensors, each once.
function mark(node,path,test,out,inherited){
  var kids=node[6],x=node[5],sum=0;
  var hit=inherited||(path!==""&&(test(path)||!!(x&&x.r&&test(x.r))));
  if(kids)for(var i=0;i<kids.length;i++)sum+=mark(kids[i],pathOf(path,kids[i][0]),test,out,hit);
  var n=sum+(hit&&V.own(node)?1:0);
  if(n)out.set(node,n);
  return n;
}
function apply(){
  var text=q.value.trim(),own=V.restricted?V.restricted():false;
  if(!text&&!own){match=null;count.textContent="";render();if(V.filtered)V.filtered(null);
    return;}
  var test=function(){return true;};
  if(text){var re=regex(text),low=text.toLowerCase();
    test=re?function(p){return re.test(p);}:function(p){return p.toLowerCase().indexOf(low)>=0;};}
  match=new Map();var n=mark(D.tree,"",test,match,!text);
  count.textContent=fmt(n)+" matching";
  open=new Set([""]);
  // Few matches: open every scope down to them; many: the first level only.
  if(n<=LIMIT)match.forEach(function(v,node){open.add(node);});
  render();
  if(V.filtered)V.filtered(text?test:null);
}
function row(node,path,depth){
  var x=node[5]||{},kids=node[6],r=el("div","r"+(kids?"":" leaf"));
  r.setAttribute("data-path",path);
  var first=el("span","nm");first.style.paddingLeft=(depth*1.1)+"em";
  var tg=el("span","tg",kids?"\u25b8":"\u00b7");first.appendChild(tg);
  first.appendChild(el("b",null,path?node[0]:"(all)"));
  r.appendChild(first);
  V.cells(r,first,node,x);
  var wrap=el("div","s");wrap.appendChild(r);
  if(kids){
    var box=el("div","kids");wrap.appendChild(box);
    var isOpen=open.has(path)||(match&&open.has(node));
    function toggle(){
      if(box.childNodes.length){box.textContent="";tg.textContent="\u25b8";open.delete(path);
        open.delete(node);return;}
      tg.textContent="\u25be";open.add(path);fill(box,node,path,depth+1);
    }
    tg.addEventListener("click",toggle);first.querySelector("b").addEventListener("click",toggle);
    if(isOpen){tg.textContent="\u25be";fill(box,node,path,depth+1);}
  }
  return wrap;
}
function fill(box,node,path,depth){
  var kids=node[6]||[],shown=0,frag=document.createDocumentFragment();
  for(var i=0;i<kids.length;i++){
    if(match&&!match.has(kids[i]))continue;
    if(shown===LIMIT){frag.appendChild(el("div","more",fmt(kids.length-i)+
      " more not shown; filter to find them"));break;}
    frag.appendChild(row(kids[i],pathOf(path,kids[i][0]),depth));shown++;
  }
  box.appendChild(frag);
}
function render(){
  var t0=performance.now();tree.textContent="";
  if(!match||match.has(D.tree))tree.appendChild(row(D.tree,"",0));
  document.body.setAttribute("data-render-ms",(performance.now()-t0).toFixed(1));
}
var args=new URLSearchParams(location.hash.slice(1));
args.getAll("expand").forEach(function(p){
  var parts=p.split(SEP),acc="";
  for(var i=0;i<parts.length;i++){acc=pathOf(acc,parts[i]);open.add(acc);}
});
if(V.init)V.init(args);
var f=args.get("filter");
if(f)q.value=f;
apply();
var timer=0;
q.addEventListener("input",function(){clearTimeout(timer);timer=setTimeout(apply,150);});
document.body.setAttribute("data-ready","1");
}
"""
