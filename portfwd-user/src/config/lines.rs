//! Where a setting is in the config file, so that an error found after parsing (a value out of
//! range, a share given twice) names its line as the parser's own errors do.

use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The 1-based line of the value at `path` in `text` (the deepest part of it that exists: a
/// table's line when the key is missing), or `None` if not even the first step is there.
#[must_use]
pub fn line_of(text: &str, path: &[Step<'_>]) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
    let mut found: Option<std::ops::Range<usize>> = None;
    for step in path {
        let value = match (*step, array) {
            (Step::Key(name), None) => table
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == name)
                .map(|(_, value)| value),
            (Step::Index(i), Some(items)) => items.get(i),
            _ => None,
        };
        let Some(value) = value else { break };
        found = Some(value.span());
        array = None;
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            DeValue::Array(items) => array = Some(items),
            _ => {}
        }
    }
    found.map(|span| line_at(text, span.start))
}

/// The 1-based line of byte `offset`.
#[must_use]
pub fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::{Step::*, *};

    const TEXT: &str = "wan = \"eth0\"\nlan = \"eth1\"\n\n[[share]]\nproto = \"tcp\"\nexternal_port = 80\n\n[[share]]\nproto = \"udp\"\nexternal_port = 0\n\n[upnp]\nigd_version = 3\ndevices = [\"10.0.0.1\",\n  \"bogus\"]\n";

    #[test]
    fn finds_keys_tables_and_array_elements() {
        assert_eq!(line_of(TEXT, &[Key("lan")]), Some(2));
        assert_eq!(line_of(TEXT, &[Key("upnp"), Key("igd_version")]), Some(13));
        assert_eq!(
            line_of(TEXT, &[Key("share"), Index(1), Key("external_port")]),
            Some(10)
        );
        assert_eq!(
            line_of(TEXT, &[Key("upnp"), Key("devices"), Index(1)]),
            Some(15)
        );
        assert_eq!(line_of(TEXT, &[Key("missing")]), None);
    }
}
