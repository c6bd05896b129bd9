//! A minimal XML tree and writer with XML 1.0 escaping
//! (<https://www.w3.org/TR/xml/#charsets>, <https://www.w3.org/TR/xml/#AVNormalize>).

use std::fmt::Display;

#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub(crate) name: &'static str,
    pub(crate) attrs: Vec<(&'static str, String)>,
    pub(crate) text: Option<String>,
    pub(crate) children: Vec<Element>,
}

impl Element {
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            attrs: Vec::new(),
            text: None,
            children: Vec::new(),
        }
    }

    /// Adds `name="value"`.
    pub(crate) fn attr(&mut self, name: &'static str, value: impl Display) {
        self.attrs.push((name, value.to_string()));
    }

    /// Adds `name="value"` when present.
    pub(crate) fn opt(&mut self, name: &'static str, value: Option<&impl Display>) {
        if let Some(value) = value {
            self.attr(name, value);
        }
    }

    /// Adds `name="a<sep>b"` when the list is not empty.
    pub(crate) fn list(&mut self, name: &'static str, values: &[impl Display], separator: &str) {
        if !values.is_empty() {
            let joined: Vec<String> = values.iter().map(ToString::to_string).collect();
            self.attrs.push((name, joined.join(separator)));
        }
    }

    pub(crate) fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(self.name);
        for (name, value) in &self.attrs {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            escape(out, value, true);
            out.push('"');
        }
        if self.text.is_none() && self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        if let Some(text) = &self.text {
            escape(out, text, false);
        }
        for child in &self.children {
            child.write(out);
        }
        out.push_str("</");
        out.push_str(self.name);
        out.push('>');
    }
}

/// Escapes `text` for element content (`attribute == false`) or a double-quoted attribute.
pub(crate) fn escape(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            // A literal CR would be normalized to LF by any parser, in text and attributes.
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            // Not allowed in XML 1.0 at all, not even as a character reference.
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            // Legal but invisible: keep them, visibly.
            '\u{7f}'..='\u{9f}' => {
                out.push_str("&#");
                out.push_str(&u32::from(c).to_string());
                out.push(';');
            }
            _ => out.push(c),
        }
    }
}
