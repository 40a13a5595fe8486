//! XMP packets: finding the TC260 `AIGC` property and merging a new one into an existing packet.
//!
//! The packet is tokenized with byte spans rather than parsed into a tree and re-serialized, so a
//! merge changes only the old label property (and the IPTC source type, when asked) and inserts
//! one `rdf:Description`; every other property, comment and whitespace stays byte for byte.
//! Names are matched by namespace URI, never by prefix (`TC260`, `tc260` and others occur).

use std::ops::Range;

/// The namespace of the label property (SPEC section 2).
pub const TC260_NS: &str = "http://www.tc260.org.cn/ns/AIGC/1.0/";
pub const RDF_NS: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
pub const IPTC_EXT_NS: &str = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/";
/// IPTC digital source type for content made by a trained model.
pub const TRAINED_ALGORITHMIC_MEDIA: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

const EMPTY_PACKET: &str = "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n\
<x:xmpmeta xmlns:x=\"adobe:ns:meta/\" x:xmptk=\"aigc-label\">\n \
<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n \
</rdf:RDF>\n</x:xmpmeta>\n<?xpacket end=\"w\"?>";

/// What a packet says that this toolkit cares about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XmpInfo {
    /// The JSON text of every TC260 `AIGC` property, unescaped, in document order.
    pub labels: Vec<String>,
    /// `Iptc4xmpExt:DigitalSourceType`, if present.
    pub digital_source_type: Option<String>,
}

/// Reads the TC260 label(s) and the IPTC source type from a packet.
pub fn read(packet: &str) -> Result<XmpInfo, String> {
    let doc = Doc::parse(packet)?;
    let mut info = XmpInfo::default();
    for e in &doc.elems {
        if e.is(TC260_NS, "AIGC") {
            info.labels.push(doc.text_of(e));
        }
        if e.is(IPTC_EXT_NS, "DigitalSourceType") && info.digital_source_type.is_none() {
            info.digital_source_type = Some(doc.text_of(e));
        }
        for a in &e.attrs {
            if a.is(TC260_NS, "AIGC") {
                info.labels.push(unescape(a.raw_value));
            }
            if a.is(IPTC_EXT_NS, "DigitalSourceType") && info.digital_source_type.is_none() {
                info.digital_source_type = Some(unescape(a.raw_value));
            }
        }
    }
    Ok(info)
}

/// Returns `existing` (or a fresh packet) with exactly one TC260 `AIGC` property holding
/// `label_json`, and, when `iptc` is set, an IPTC digital source type saying the content is
/// AI-made (an existing `...AlgorithmicMedia` value is kept, since it may be the more precise
/// `compositeWithTrainedAlgorithmicMedia`).
pub fn merge(existing: Option<&str>, label_json: &str, iptc: bool) -> Result<String, String> {
    rewrite(existing.unwrap_or(EMPTY_PACKET), Some(label_json), iptc)
}

/// Returns the packet without any TC260 `AIGC` property, everything else kept; for XMP carriers
/// that are not the one a format writes its label to.
pub fn remove_label(packet: &str) -> Result<String, String> {
    rewrite(packet, None, false)
}

fn rewrite(packet: &str, label_json: Option<&str>, iptc: bool) -> Result<String, String> {
    let doc = Doc::parse(packet)?;
    let keep_dst = doc
        .elems
        .iter()
        .flat_map(|e| {
            let own = e
                .is(IPTC_EXT_NS, "DigitalSourceType")
                .then(|| doc.text_of(e));
            let attrs = e
                .attrs
                .iter()
                .filter(|a| a.is(IPTC_EXT_NS, "DigitalSourceType"))
                .map(|a| unescape(a.raw_value));
            own.into_iter().chain(attrs)
        })
        // Our own value is rewritten (so relabeling is stable); another AI value is kept.
        .any(|v| v.contains("AlgorithmicMedia") && v.trim() != TRAINED_ALGORITHMIC_MEDIA);
    let write_dst = iptc && !keep_dst && label_json.is_some();
    let replaced = |ns: &str, local: &str| -> bool {
        (ns == TC260_NS && local == "AIGC")
            || (write_dst && ns == IPTC_EXT_NS && local == "DigitalSourceType")
    };

    let mut removed_elem = vec![false; doc.elems.len()];
    let mut cuts: Vec<Range<usize>> = Vec::new();
    for (i, e) in doc.elems.iter().enumerate() {
        if e.ns.as_deref().is_some_and(|ns| replaced(ns, e.local)) {
            removed_elem[i] = true;
            cuts.push(doc.with_leading_space(e.outer()));
        }
        for a in &e.attrs {
            if a.ns.as_deref().is_some_and(|ns| replaced(ns, a.local)) {
                cuts.push(a.span.clone());
            }
        }
    }
    // An rdf:Description left with nothing but rdf:about and namespace declarations (typically
    // the one a previous run added) goes too, so repeated marking does not pile up empty nodes.
    for (i, e) in doc.elems.iter().enumerate() {
        if !e.is(RDF_NS, "Description") || removed_elem[i] {
            continue;
        }
        let children: Vec<usize> = (0..doc.elems.len())
            .filter(|&j| doc.elems[j].parent == Some(i))
            .collect();
        let children_gone = children.iter().all(|&j| removed_elem[j]);
        let attrs_gone = e.attrs.iter().all(|a| {
            a.is_xmlns
                || a.is(RDF_NS, "about")
                || a.ns.as_deref().is_some_and(|ns| replaced(ns, a.local))
        });
        // Only a Description that held something we removed; an already empty one stays as is.
        let had_content = !children.is_empty()
            || e.attrs
                .iter()
                .any(|a| !a.is_xmlns && !a.is(RDF_NS, "about"));
        let text_only_space = e.end == e.start || {
            let mut pos = e.start.end;
            let mut blank = true;
            for &j in &children {
                let r = doc.elems[j].outer();
                blank &= packet[pos..r.start].trim().is_empty();
                pos = r.end;
            }
            blank && packet[pos..e.end.start].trim().is_empty()
        };
        if children_gone && attrs_gone && had_content && text_only_space {
            cuts.push(doc.with_leading_space(e.outer()));
        }
    }

    let Some(label_json) = label_json else {
        return Ok(apply_cuts(packet, cuts, None));
    };
    let rdf = doc
        .elems
        .iter()
        .find(|e| e.is(RDF_NS, "RDF") && e.end != e.start)
        .ok_or("XMP packet has no rdf:RDF element to hold the label")?;
    let rdf_prefix = prefix_of(rdf.qname);
    let (p, declare_rdf) = if rdf_prefix.is_empty() {
        ("rdf", format!(" xmlns:rdf=\"{RDF_NS}\""))
    } else {
        (rdf_prefix, String::new())
    };
    let mut insert =
        format!("\n  <{p}:Description {p}:about=\"\"{declare_rdf}\n    xmlns:TC260=\"{TC260_NS}\"");
    if write_dst {
        insert.push_str(&format!("\n    xmlns:Iptc4xmpExt=\"{IPTC_EXT_NS}\""));
    }
    insert.push_str(&format!(
        ">\n   <TC260:AIGC>{}</TC260:AIGC>\n",
        escape(label_json)
    ));
    if write_dst {
        insert.push_str(&format!(
            "   <Iptc4xmpExt:DigitalSourceType>{TRAINED_ALGORITHMIC_MEDIA}</Iptc4xmpExt:DigitalSourceType>\n"
        ));
    }
    insert.push_str(&format!("  </{p}:Description>"));
    // Right after the last content of rdf:RDF, so the removal of an earlier label Description
    // (which takes its leading whitespace along) and this insertion keep the layout stable.
    let insert_at = doc.with_leading_space(rdf.end.clone()).start;

    Ok(apply_cuts(packet, cuts, Some((insert_at, &insert))))
}

/// The packet with the `cuts` removed and `insert` placed at its offset.
fn apply_cuts(packet: &str, mut cuts: Vec<Range<usize>>, insert: Option<(usize, &str)>) -> String {
    let (insert_at, insert) = insert.unwrap_or((usize::MAX, ""));
    cuts.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut out = String::with_capacity(packet.len() + insert.len());
    let mut pos = 0;
    for cut in cuts {
        if cut.start < pos {
            pos = pos.max(cut.end); // nested in a cut already made
            continue;
        }
        if insert_at >= pos && insert_at <= cut.start {
            out.push_str(&packet[pos..insert_at]);
            out.push_str(insert);
            pos = insert_at;
        }
        out.push_str(&packet[pos..cut.start]);
        pos = cut.end;
    }
    if insert_at != usize::MAX && insert_at >= pos {
        out.push_str(&packet[pos..insert_at]);
        out.push_str(insert);
        pos = insert_at;
    }
    out.push_str(&packet[pos..]);
    out
}

/// Pads a packet with whitespace before its `<?xpacket end` trailer (or at the end) to exactly
/// `len` bytes, for carriers rewritten in place. `None` when the packet is already longer.
pub fn pad_to(packet: &str, len: usize) -> Option<String> {
    let extra = len.checked_sub(packet.len())?;
    let at = packet.rfind("<?xpacket end").unwrap_or(packet.len());
    let mut out = String::with_capacity(len);
    out.push_str(&packet[..at]);
    out.extend(std::iter::repeat_n(' ', extra));
    out.push_str(&packet[at..]);
    Some(out)
}

/// Entity-escapes text for element content or an attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Resolves entities and CDATA sections and drops comments in XML character data.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['&', '<']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").unwrap_or(after.len());
            out.push_str(&after[..end]);
            rest = after.get(end + 3..).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").map_or(after.len(), |e| e + 3);
            rest = &after[end..];
        } else if rest.starts_with('<') {
            // A nested element inside the property: skip its tag, keep its text.
            let end = rest.find('>').map_or(rest.len(), |e| e + 1);
            rest = &rest[end..];
        } else {
            let end = rest.find(';').filter(|&e| e <= 12);
            let decoded = end.and_then(|e| match &rest[1..e] {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                n if n.starts_with("#x") || n.starts_with("#X") => u32::from_str_radix(&n[2..], 16)
                    .ok()
                    .and_then(char::from_u32),
                n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            });
            match (decoded, end) {
                (Some(c), Some(e)) => {
                    out.push(c);
                    rest = &rest[e + 1..];
                }
                _ => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        }
    }
    out.push_str(rest);
    out
}

fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map_or("", |(p, _)| p)
}

fn local_of(qname: &str) -> &str {
    qname.split_once(':').map_or(qname, |(_, l)| l)
}

struct Attr<'a> {
    ns: Option<String>,
    local: &'a str,
    raw_value: &'a str,
    /// From the whitespace before the name to the closing quote.
    span: Range<usize>,
    is_xmlns: bool,
}

impl Attr<'_> {
    fn is(&self, ns: &str, local: &str) -> bool {
        self.local == local && self.ns.as_deref() == Some(ns)
    }
}

struct Elem<'a> {
    qname: &'a str,
    ns: Option<String>,
    local: &'a str,
    attrs: Vec<Attr<'a>>,
    /// The start tag (the whole tag for an empty element).
    start: Range<usize>,
    /// The end tag (equal to `start` for an empty element).
    end: Range<usize>,
    parent: Option<usize>,
}

impl Elem<'_> {
    fn is(&self, ns: &str, local: &str) -> bool {
        self.local == local && self.ns.as_deref() == Some(ns)
    }
    fn outer(&self) -> Range<usize> {
        self.start.start..self.end.end
    }
}

struct Doc<'a> {
    src: &'a str,
    elems: Vec<Elem<'a>>,
}

impl<'a> Doc<'a> {
    /// A well-formedness-checking scan of tags with namespace resolution.
    fn parse(src: &'a str) -> Result<Doc<'a>, String> {
        let bytes = src.as_bytes();
        let mut elems: Vec<Elem<'a>> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut scopes: Vec<Vec<(&'a str, String)>> = Vec::new();
        let mut i = 0;
        while let Some(off) = src[i..].find('<') {
            let lt = i + off;
            let rest = &src[lt..];
            let skip_to = |pat: &str, what: &str| -> Result<usize, String> {
                rest.find(pat)
                    .map(|e| lt + e + pat.len())
                    .ok_or_else(|| format!("XMP packet has an unterminated {what}"))
            };
            if rest.starts_with("<?") {
                i = skip_to("?>", "processing instruction")?;
                continue;
            }
            if rest.starts_with("<!--") {
                i = skip_to("-->", "comment")?;
                continue;
            }
            if rest.starts_with("<![CDATA[") {
                i = skip_to("]]>", "CDATA section")?;
                continue;
            }
            if rest.starts_with("<!") {
                i = skip_to(">", "declaration")?;
                continue;
            }
            if let Some(after) = rest.strip_prefix("</") {
                let gt = after
                    .find('>')
                    .ok_or("XMP packet has an unterminated end tag")?;
                let name = after[..gt].trim();
                let idx = open
                    .pop()
                    .ok_or_else(|| format!("XMP packet closes </{name}> that was never opened"))?;
                if elems[idx].qname != name {
                    return Err(format!(
                        "XMP packet is not well-formed: <{}> closed by </{name}>",
                        elems[idx].qname
                    ));
                }
                scopes.pop();
                i = lt + 2 + gt + 1;
                elems[idx].end = lt..i;
                continue;
            }
            // Start or empty-element tag.
            let mut p = lt + 1;
            let name_end = src[p..]
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .map(|e| p + e)
                .ok_or("XMP packet has an unterminated start tag")?;
            let qname = &src[p..name_end];
            if qname.is_empty() {
                return Err("XMP packet has a tag without a name".into());
            }
            p = name_end;
            let mut raw_attrs: Vec<(&'a str, &'a str, Range<usize>)> = Vec::new();
            let empty;
            loop {
                let ws_start = p;
                while p < bytes.len() && bytes[p].is_ascii_whitespace() {
                    p += 1;
                }
                match bytes.get(p) {
                    None => return Err("XMP packet ends inside a tag".into()),
                    Some(b'>') => {
                        empty = false;
                        p += 1;
                        break;
                    }
                    Some(b'/') if bytes.get(p + 1) == Some(&b'>') => {
                        empty = true;
                        p += 2;
                        break;
                    }
                    _ => {}
                }
                let eq = src[p..]
                    .find('=')
                    .map(|e| p + e)
                    .ok_or_else(|| format!("XMP packet: attribute without value in <{qname}>"))?;
                let aname = src[p..eq].trim();
                let mut q = eq + 1;
                while q < bytes.len() && bytes[q].is_ascii_whitespace() {
                    q += 1;
                }
                let quote = *bytes.get(q).ok_or("XMP packet ends inside a tag")?;
                if quote != b'"' && quote != b'\'' {
                    return Err(format!(
                        "XMP packet: unquoted attribute {aname} in <{qname}>"
                    ));
                }
                let close = src[q + 1..]
                    .find(quote as char)
                    .map(|e| q + 1 + e)
                    .ok_or("XMP packet has an unterminated attribute value")?;
                raw_attrs.push((aname, &src[q + 1..close], ws_start..close + 1));
                p = close + 1;
            }
            let decls: Vec<(&'a str, String)> = raw_attrs
                .iter()
                .filter_map(|(n, v, _)| {
                    if *n == "xmlns" {
                        Some(("", unescape(v)))
                    } else {
                        n.strip_prefix("xmlns:").map(|pfx| (pfx, unescape(v)))
                    }
                })
                .collect();
            scopes.push(decls);
            let resolve = |prefix: &str| -> Option<String> {
                scopes
                    .iter()
                    .rev()
                    .flat_map(|s| s.iter())
                    .find(|(p, _)| *p == prefix)
                    .map(|(_, uri)| uri.clone())
            };
            let attrs = raw_attrs
                .into_iter()
                .map(|(n, v, span)| {
                    let is_xmlns = n == "xmlns" || n.starts_with("xmlns:");
                    let prefix = prefix_of(n);
                    Attr {
                        ns: if prefix.is_empty() {
                            None
                        } else {
                            resolve(prefix)
                        },
                        local: local_of(n),
                        raw_value: v,
                        span,
                        is_xmlns,
                    }
                })
                .collect();
            let elem = Elem {
                qname,
                ns: resolve(prefix_of(qname)),
                local: local_of(qname),
                attrs,
                start: lt..p,
                end: lt..p,
                parent: open.last().copied(),
            };
            elems.push(elem);
            if empty {
                scopes.pop();
            } else {
                open.push(elems.len() - 1);
            }
            i = p;
        }
        if let Some(&idx) = open.last() {
            return Err(format!(
                "XMP packet ends before <{}> is closed (truncated)",
                elems[idx].qname
            ));
        }
        Ok(Doc { src, elems })
    }

    fn text_of(&self, e: &Elem) -> String {
        if e.end == e.start {
            return String::new();
        }
        unescape(&self.src[e.start.end..e.end.start])
    }

    /// Extends a span back over the indentation before it, so removal leaves no blank line.
    fn with_leading_space(&self, r: Range<usize>) -> Range<usize> {
        let before = &self.src[..r.start];
        let trimmed = before.trim_end_matches([' ', '\t', '\r', '\n']);
        trimmed.len()..r.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: &str = r#"{"Label":"1","ContentProducer":"p","ProduceID":"a&b<c"}"#;

    #[test]
    fn fresh_packet_round_trips() {
        let p = merge(None, L, true).unwrap();
        let info = read(&p).unwrap();
        assert_eq!(info.labels, vec![L.to_string()]);
        assert_eq!(
            info.digital_source_type.as_deref(),
            Some(TRAINED_ALGORITHMIC_MEDIA)
        );
        assert!(p.contains("&quot;Label&quot;"));
    }

    #[test]
    fn merge_replaces_and_keeps_everything_else() {
        let existing = r#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tc260="http://www.tc260.org.cn/ns/AIGC/1.0/" tc260:AIGC="{&quot;Label&quot;:&quot;2&quot;}">
  <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Keep me</rdf:li></rdf:Alt></dc:title>
 </rdf:Description>
 <rdf:Description rdf:about="" xmlns:T="http://www.tc260.org.cn/ns/AIGC/1.0/"><T:AIGC>{"Label":"3"}</T:AIGC></rdf:Description>
</rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"#;
        let before = read(existing).unwrap();
        assert_eq!(before.labels.len(), 2);
        let merged = merge(Some(existing), L, false).unwrap();
        let after = read(&merged).unwrap();
        assert_eq!(after.labels, vec![L.to_string()]);
        assert!(merged.contains("<rdf:li xml:lang=\"x-default\">Keep me</rdf:li>"));
        assert!(merged.contains("xmlns:dc=\"http://purl.org/dc/elements/1.1/\""));
        assert!(
            !merged.contains("<T:AIGC>"),
            "the emptied Description is removed:\n{merged}"
        );
        // Merging again does not pile up Descriptions, with or without the IPTC property.
        let again = merge(Some(&merged), L, false).unwrap();
        assert_eq!(again.len(), merged.len(), "{again}");
        let with_iptc = merge(Some(&merged), L, true).unwrap();
        assert_eq!(merge(Some(&with_iptc), L, true).unwrap(), with_iptc);
    }

    #[test]
    fn keeps_more_precise_source_type() {
        let existing = merge(None, L, false).unwrap().replace(
            "<TC260:AIGC>",
            "<Iptc4xmpExt:DigitalSourceType xmlns:Iptc4xmpExt=\"http://iptc.org/std/Iptc4xmpExt/2008-02-29/\">http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia</Iptc4xmpExt:DigitalSourceType><TC260:AIGC>",
        );
        let merged = merge(Some(&existing), L, true).unwrap();
        let info = read(&merged).unwrap();
        assert!(info
            .digital_source_type
            .unwrap()
            .ends_with("compositeWithTrainedAlgorithmicMedia"));
    }

    #[test]
    fn remove_label_keeps_the_rest() {
        let p = merge(None, L, true).unwrap();
        let without = remove_label(&p).unwrap();
        let info = read(&without).unwrap();
        assert!(info.labels.is_empty());
        assert_eq!(
            info.digital_source_type.as_deref(),
            Some(TRAINED_ALGORITHMIC_MEDIA)
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert!(read("<x:xmpmeta><rdf:RDF>").is_err());
        assert!(read("<a></b>").is_err());
        assert!(merge(Some("<x/>"), L, false).is_err());
    }

    #[test]
    fn unescape_handles_entities_and_cdata() {
        assert_eq!(unescape("a&amp;b&#x41;&#66;<![CDATA[<x>]]>"), "a&bAB<x>");
    }

    #[test]
    fn pads_before_trailer() {
        let p = merge(None, L, false).unwrap();
        let padded = pad_to(&p, p.len() + 100).unwrap();
        assert_eq!(padded.len(), p.len() + 100);
        assert!(padded.ends_with("<?xpacket end=\"w\"?>"));
        assert_eq!(read(&padded).unwrap().labels, vec![L.to_string()]);
    }
}
