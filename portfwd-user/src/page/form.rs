//! Form posts (`application/x-www-form-urlencoded`), bounded: at most [`MAX_FIELDS`] fields.

use std::collections::BTreeMap;

/// Most fields one form may post.
pub const MAX_FIELDS: usize = 32;

/// A posted form: each field's last value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form(BTreeMap<String, String>);

/// Why a body is not a form.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the form has more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("the form is not UTF-8 or has a broken %-escape")]
    Encoding,
}

impl Form {
    /// Parses a urlencoded body.
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let mut fields = BTreeMap::new();
        for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            if fields.len() >= MAX_FIELDS {
                return Err(FormError::TooManyFields);
            }
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            fields.insert(decode(key)?, decode(value)?);
        }
        Ok(Self(fields))
    }

    /// Field `name`, trimmed; `None` when absent or blank.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// Field `name` as typed, `""` when absent (to put back into the form).
    #[must_use]
    pub fn value(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// Whether checkbox `name` was ticked.
    #[must_use]
    pub fn checked(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Sets a field (the page fills a form to edit).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_owned(), value.into());
    }
}

/// Decodes `+` and `%XX`.
fn decode(text: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3).ok_or(FormError::Encoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| FormError::Encoding)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| FormError::Encoding)?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::Encoding)
}

/// `text` %-escaped for a URL's query.
#[must_use]
pub fn escape(text: &str) -> String {
    use std::fmt::Write as _;
    text.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_browsers_post() {
        let form =
            Form::parse(b"proto=tcp&external_port=27015-27030&name=my+game%21&hairpin=on&empty=")
                .expect("form");
        assert_eq!(form.get("proto"), Some("tcp"));
        assert_eq!(form.get("external_port"), Some("27015-27030"));
        assert_eq!(form.get("name"), Some("my game!"));
        assert!(form.checked("hairpin"));
        assert!(!form.checked("enabled"));
        assert_eq!(form.get("empty"), None);
        assert_eq!(form.value("empty"), "");
        assert_eq!(form.value("missing"), "");
        assert_eq!(Form::parse(b"").expect("empty"), Form::default());
        assert_eq!(Form::parse(b"a=%C3%A9").expect("utf8").get("a"), Some("é"));
    }

    #[test]
    fn refuses_broken_and_huge_forms() {
        assert_eq!(Form::parse(b"a=%4"), Err(FormError::Encoding));
        assert_eq!(Form::parse(b"a=%zz"), Err(FormError::Encoding));
        assert_eq!(Form::parse(b"a=%ff"), Err(FormError::Encoding));
        let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("f{i}=1")).collect();
        assert_eq!(
            Form::parse(many.join("&").as_bytes()),
            Err(FormError::TooManyFields)
        );
    }

    #[test]
    fn escapes_for_a_query() {
        assert_eq!(
            escape("tcp:27015-27030@1.2.3.4"),
            "tcp%3A27015-27030%401.2.3.4"
        );
        assert_eq!(
            Form::parse(format!("id={}", escape("a b&c=d")).as_bytes())
                .expect("form")
                .get("id"),
            Some("a b&c=d")
        );
    }
}
