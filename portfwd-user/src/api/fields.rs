//! Reading a JSON request body field by field: each taken out by name and type, what is left
//! over an unknown field (400 naming it).

use std::str::FromStr;

use serde_json::{Map, Value};

use super::{ApiError, MAX_NAME};

/// A JSON object's fields, taken one by one; what is left over is an unknown field.
pub(super) struct Fields(Map<String, Value>);

impl Fields {
    pub(super) fn new(map: Map<String, Value>) -> Self {
        Self(map)
    }

    pub(super) fn take(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    pub(super) fn bool(&mut self, name: &'static str) -> Result<Option<bool>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(ApiError::field(name, "expected true or false")),
        }
    }

    pub(super) fn string(&mut self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::field(name, "expected a string")),
        }
    }

    pub(super) fn parsed<T: FromStr>(
        &mut self,
        name: &'static str,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        self.string(name)?
            .map(|s| {
                s.parse()
                    .map_err(|_| ApiError::field(name, format!("`{s}` is not {what}")))
            })
            .transpose()
    }

    pub(super) fn number(
        &mut self,
        name: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ApiError> {
        self.take(name)
            .map(|value| number_in(name, value, &range))
            .transpose()
    }

    /// A port (`8080`) or a port range (`"27015-27030"`; `"8080"` is a port too): the first
    /// and last port.
    pub(super) fn ports(&mut self, name: &'static str) -> Result<Option<(u16, u16)>, ApiError> {
        match self.take(name) {
            Some(Value::String(text)) => crate::share::parse_ports(&text)
                .map(Some)
                .map_err(|e| ApiError::field(name, e.to_string())),
            Some(other) => port_in(name, other).map(|port| Some((port, port))),
            None => Ok(None),
        }
    }

    pub(super) fn done(self) -> Result<(), ApiError> {
        match self.0.keys().next() {
            Some(extra) => Err(ApiError::field("body", format!("unknown field `{extra}`"))),
            None => Ok(()),
        }
    }
}

/// `value` of field `name` as a number in `range`.
fn number_in(
    name: &'static str,
    value: Value,
    range: &std::ops::RangeInclusive<u64>,
) -> Result<u64, ApiError> {
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(n) if range.contains(&n) => Ok(n),
            _ => Err(ApiError::field(
                name,
                format!("{n} is out of range ({}-{})", range.start(), range.end()),
            )),
        },
        _ => Err(ApiError::field(name, "expected a number")),
    }
}

/// `value` of field `name` as a port (1-65535).
fn port_in(name: &'static str, value: Value) -> Result<u16, ApiError> {
    let n = number_in(name, value, &(1..=u64::from(u16::MAX)))?;
    u16::try_from(n).map_err(|_| ApiError::field(name, "expected a port"))
}

pub(super) fn no_fields(body: &Map<String, Value>) -> Result<(), ApiError> {
    Fields::new(body.clone()).done()
}

/// A share name: printable, at most [`MAX_NAME`] characters.
pub(super) fn name(text: String) -> Result<String, ApiError> {
    if text.chars().count() > MAX_NAME {
        return Err(ApiError::field(
            "name",
            format!("longer than {MAX_NAME} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::field("name", "has control characters"));
    }
    Ok(text)
}

pub(super) fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::field(field, "missing"))
}
