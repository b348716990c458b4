//! The pieces of the HTML report: escaping, sortable tables, inlined figures, collapsible
//! sections and the page around them. Everything the page needs is inside it — styles, the
//! few lines of script that sort tables and open every section for printing, and the figures
//! as `data:` URLs — so the one file reads offline and can be sent on.

use base64::Engine;

/// Text as HTML: `&`, `<`, `>`, `"` and `'` escaped (safe in element text and quoted
/// attributes alike).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A string usable as an element id (and `#fragment`): letters, digits, `-` and `_`, others as `-`.
pub fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A table whose columns sort on a click on their heading (numbers as numbers). Long
/// decimals are shown to 4 places; sorting uses the full value.
pub fn table(caption: &str, header: &[String], rows: &[Vec<String>]) -> String {
    let mut h = String::from("<div class=\"scroll\"><table class=\"sortable\">");
    if !caption.is_empty() {
        h.push_str(&format!("<caption>{}</caption>", escape(caption)));
    }
    h.push_str("<thead><tr>");
    for c in header {
        h.push_str(&format!("<th title=\"sort\">{}</th>", escape(c)));
    }
    h.push_str("</tr></thead><tbody>");
    for r in rows {
        h.push_str("<tr>");
        for v in r {
            h.push_str(&cell(v));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div>");
    h
}

fn cell(v: &str) -> String {
    match v.parse::<f64>() {
        Ok(x) if v.split_once('.').is_some_and(|(_, d)| d.len() > 4) && x.is_finite() => {
            format!("<td class=\"num\" data-v=\"{}\">{x:.4}</td>", escape(v))
        }
        Ok(_) => format!("<td class=\"num\">{}</td>", escape(v)),
        Err(_) => format!("<td>{}</td>", escape(v)),
    }
}

/// Name/value rows, for one cell's numbers.
pub fn key_values(pairs: &[(String, String)]) -> String {
    let mut h = String::from("<table class=\"kv\"><tbody>");
    for (k, v) in pairs {
        h.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(k),
            escape(v)
        ));
    }
    h.push_str("</tbody></table>");
    h
}

/// The MIME type of a figure file by its extension.
pub fn mime(name: &str) -> &'static str {
    if name.ends_with(".svg") {
        "image/svg+xml"
    } else if name.ends_with(".jpg") || name.ends_with(".jpeg") {
        "image/jpeg"
    } else {
        "image/png"
    }
}

/// A figure inlined as a `data:` URL, with its caption.
pub fn figure(bytes: &[u8], mime: &str, caption: &str) -> String {
    format!(
        "<figure><img src=\"data:{mime};base64,{}\" alt=\"{c}\"><figcaption>{c}</figcaption></figure>",
        base64::engine::general_purpose::STANDARD.encode(bytes),
        c = escape(caption)
    )
}

/// A collapsible section; `summary` is already HTML.
pub fn details(id: &str, summary: &str, body: &str, open: bool) -> String {
    format!(
        "<details id=\"{}\"{}><summary>{summary}</summary><div class=\"body\">{body}</div></details>",
        escape(&anchor(id)),
        if open { " open" } else { "" }
    )
}

/// Preformatted text (configurations, commands, errors).
pub fn pre(text: &str) -> String {
    format!("<pre>{}</pre>", escape(text))
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem auto;max-width:1200px;padding:0 1rem;color:#1b1b1b;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
.meta{color:#555;font-size:.9rem}.meta code{background:#f3f3f3;padding:0 .2rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.2rem .45rem;text-align:left;white-space:nowrap}
table.sortable th{background:#f0f3f7;cursor:pointer;position:sticky;top:0}
table.sortable th[data-dir=asc]::after{content:" \25B2"}table.sortable th[data-dir=desc]::after{content:" \25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}caption{text-align:left;font-weight:600;padding:.3rem 0}
table.kv th{background:#f7f7f7;font-weight:500}
tbody tr:nth-child(even){background:#fafafa}
figure{display:inline-block;margin:.4rem;vertical-align:top;max-width:100%}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.8rem;color:#555;max-width:40rem}
.pair{display:inline-flex;gap:.3rem;margin:.3rem;border:1px solid #eee;padding:.3rem}.pair figure{margin:0}.pair img{width:160px;image-rendering:pixelated}
details{border:1px solid #ddd;border-radius:4px;margin:.4rem 0}details>summary{cursor:pointer;padding:.4rem .6rem;background:#f7f9fb}
details .body{padding:.5rem .8rem}pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.8rem;white-space:pre-wrap}
.bad{color:#a40000}.warn{color:#8a5a00}.ok{color:#1d6b1d}
@media print{details>summary{background:none}body{max-width:none}table.sortable th{position:static}}
"#;

const SCRIPT: &str = r#"
(function(){
function key(td){var v=td.hasAttribute('data-v')?td.getAttribute('data-v'):td.textContent.trim();var n=parseFloat(v);return isNaN(n)?[1,v.toLowerCase()]:[0,n];}
document.querySelectorAll('table.sortable').forEach(function(t){
 var ths=t.tHead.rows[0].cells;
 Array.prototype.forEach.call(ths,function(th,i){th.addEventListener('click',function(){
  var dir=th.getAttribute('data-dir')==='asc'?-1:1;
  Array.prototype.forEach.call(ths,function(o){o.removeAttribute('data-dir');});
  th.setAttribute('data-dir',dir>0?'asc':'desc');
  var b=t.tBodies[0];var rows=Array.prototype.slice.call(b.rows);
  rows.sort(function(a,c){var x=key(a.cells[i]||a),y=key(c.cells[i]||c);
   if(x[0]!==y[0])return (x[0]-y[0])*dir;return (x[1]<y[1]?-1:x[1]>y[1]?1:0)*dir;});
  rows.forEach(function(r){b.appendChild(r);});
 });});
});
window.addEventListener('beforeprint',function(){document.querySelectorAll('details').forEach(function(d){d.open=true;});});
})();
"#;

/// The whole page.
pub fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"generator\" content=\"fedsentry {}\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}\n<script>{SCRIPT}</script>\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_escaped_everywhere() {
        let evil = "<script>alert('x')</script> & \"q\"";
        let page = document(
            evil,
            &(table(evil, &[evil.to_string()], &[vec![evil.to_string()]])
                + &key_values(&[(evil.to_string(), evil.to_string())])
                + &details(evil, &escape(evil), &pre(evil), false)
                + &figure(b"x", "image/png", evil)),
        );
        assert!(!page.contains("<script>alert"), "raw markup leaked");
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;")
        );
        // The page's own script is the only one.
        assert_eq!(page.matches("<script>").count(), 1);
        assert!(page.contains("id=\"-script-alert--x----script-----q-\""));
    }

    #[test]
    fn numbers_sort_as_numbers_and_show_four_decimals() {
        let t = table(
            "",
            &["acc".into()],
            &[
                vec!["0.81234567".into()],
                vec!["12".into()],
                vec!["n/a".into()],
            ],
        );
        assert!(t.contains("<td class=\"num\" data-v=\"0.81234567\">0.8123</td>"));
        assert!(t.contains("<td class=\"num\">12</td>"));
        assert!(t.contains("<td>n/a</td>"));
    }

    #[test]
    fn figures_are_inlined() {
        let f = figure(b"<svg/>", mime("a.svg"), "partition");
        assert!(f.contains("src=\"data:image/svg+xml;base64,PHN2Zy8+\""));
        assert_eq!(mime("x.png"), "image/png");
    }
}
