//! SOAP 1.1 as UPnP uses it: a request envelope with one action element and its arguments,
//! a response envelope, and the UPnP fault.
//!
//! The parser (quick-xml) takes what UPnP control points send and nothing more: one action
//! in the body, its arguments as child elements holding text, at most [`MAX_ARGS`] arguments
//! of at most [`MAX_VALUE`] bytes. A DTD is refused outright, so no entity is ever declared,
//! let alone fetched; only the five predefined entities and character references are read.

use std::fmt::Write as _;

use quick_xml::{
    escape::{escape, resolve_predefined_entity, unescape},
    events::Event,
    name::ResolveResult,
    reader::NsReader,
};

const ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// Arguments an action may carry (AddPortMapping has 8).
pub const MAX_ARGS: usize = 16;
/// Bytes an argument's value may have.
pub const MAX_VALUE: usize = 1024;
/// Element nesting a request may have (Envelope, Body, action, argument).
const MAX_DEPTH: usize = 8;

/// A parsed control request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The action element's namespace: the service type, `urn:...:WANIPConnection:2`.
    pub service: String,
    pub action: String,
    pub args: Vec<(String, String)>,
}

impl Request {
    /// The argument `name`, if given.
    #[must_use]
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request body is not a UPnP control request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SoapError {
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error("a document type declaration is not accepted")]
    Doctype,
    #[error("no SOAP envelope")]
    NoEnvelope,
    #[error("no action in the SOAP body")]
    NoAction,
    #[error("the action element has no namespace")]
    NoNamespace,
    #[error("more than {MAX_ARGS} arguments")]
    TooManyArgs,
    #[error("argument {0} is longer than {MAX_VALUE} bytes")]
    TooLong(String),
    #[error("nesting deeper than a SOAP request has")]
    TooDeep,
    #[error("unknown entity &{0};")]
    Entity(String),
}

/// Where the parser is in the envelope.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    Start,
    Envelope,
    Header,
    Body,
    Action,
    Arg,
    /// Past the action: the rest of the document is only checked for well-formedness.
    Done,
}

/// Parses a control request body.
#[expect(
    clippy::too_many_lines,
    reason = "one state machine over the envelope reads best in one place"
)]
pub fn parse(body: &str) -> Result<Request, SoapError> {
    // No trimming: text around an entity reference comes as separate events, and trimming
    // each would eat the spaces between them. Callers trim whole values.
    let mut reader = NsReader::from_str(body);
    let xml = |e: quick_xml::Error| SoapError::Xml(e.to_string());
    let mut at = At::Start;
    let mut depth = 0usize;
    let mut header_depth = 0usize;
    let mut request: Option<Request> = None;
    let mut value = String::new();
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(xml)?;
        let ns = match ns {
            ResolveResult::Bound(ns) => Some(namespace(ns.as_ref())?),
            _ => None,
        };
        match event {
            Event::DocType(_) => return Err(SoapError::Doctype),
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if !empty {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(SoapError::TooDeep);
                    }
                }
                let name = e.local_name().as_ref().to_owned();
                let in_envelope_ns = ns.as_deref() == Some(ENVELOPE_NS);
                at = match at {
                    At::Start if in_envelope_ns && name == "Envelope" && !empty => At::Envelope,
                    At::Start => return Err(SoapError::NoEnvelope),
                    At::Envelope if in_envelope_ns && name == "Header" => {
                        header_depth = depth;
                        if empty { At::Envelope } else { At::Header }
                    }
                    At::Envelope if in_envelope_ns && name == "Body" => {
                        if empty {
                            return Err(SoapError::NoAction);
                        }
                        At::Body
                    }
                    At::Envelope | At::Header => at,
                    At::Body => {
                        let service = ns.ok_or(SoapError::NoNamespace)?;
                        check_name(&name)?;
                        request = Some(Request {
                            service,
                            action: name,
                            args: Vec::new(),
                        });
                        if empty { At::Done } else { At::Action }
                    }
                    At::Action => {
                        let request = request.as_mut().ok_or(SoapError::NoAction)?;
                        if request.args.len() == MAX_ARGS {
                            return Err(SoapError::TooManyArgs);
                        }
                        check_name(&name)?;
                        request.args.push((name, String::new()));
                        value.clear();
                        if empty { At::Action } else { At::Arg }
                    }
                    // An element inside an argument: UPnP arguments are plain text.
                    At::Arg => return Err(SoapError::Xml("an argument holds an element".into())),
                    At::Done => At::Done,
                };
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                at = match at {
                    At::Arg => {
                        if let Some((_, v)) = request.as_mut().and_then(|r| r.args.last_mut()) {
                            v.clone_from(&value);
                        }
                        At::Action
                    }
                    At::Action => At::Done,
                    At::Header if depth < header_depth => At::Envelope,
                    at => at,
                };
            }
            Event::Text(t) => {
                if at == At::Arg {
                    push_bounded(&mut value, &t.xml10_content(), request.as_ref())?;
                }
            }
            Event::CData(t) => {
                if at == At::Arg {
                    push_bounded(&mut value, &t.xml10_content(), request.as_ref())?;
                }
            }
            Event::GeneralRef(r) => {
                if at == At::Arg {
                    let text = if let Some(c) = r.resolve_char_ref().map_err(xml)? {
                        c.to_string()
                    } else {
                        let name = r.xml10_content();
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| SoapError::Entity(name.clone().into_owned()))?
                            .to_owned()
                    };
                    push_bounded(&mut value, &text, request.as_ref())?;
                }
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
        }
    }
    request.ok_or(if at == At::Start {
        SoapError::NoEnvelope
    } else {
        SoapError::NoAction
    })
}

/// Action and argument names are UPnP names (letters, digits, `_`, and leniently `-` and `.`):
/// the reader takes whatever precedes the first blank as an element's name, and a name with
/// `"`, `=` or `<` in it would be written back into the response as broken XML.
fn check_name(name: &str) -> Result<(), SoapError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SoapError::Xml(format!(
            "`{name}` is not an action or argument name"
        )))
    }
}

/// A namespace name: the `xmlns` attribute's value with its references resolved (Namespaces
/// in XML 1.0, section 2.2), as [`response`] escapes it on the way out. The reader hands over
/// the raw attribute text.
fn namespace(raw: &str) -> Result<String, SoapError> {
    unescape(raw)
        .map(std::borrow::Cow::into_owned)
        .map_err(|e| SoapError::Xml(e.to_string()))
}

fn push_bounded(
    value: &mut String,
    text: &str,
    request: Option<&Request>,
) -> Result<(), SoapError> {
    if value.len() + text.len() > MAX_VALUE {
        let name = request
            .and_then(|r| r.args.last())
            .map(|(n, _)| n.clone())
            .unwrap_or_default();
        return Err(SoapError::TooLong(name));
    }
    value.push_str(text);
    Ok(())
}

const ENVELOPE_OPEN: &str = r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>"#;
const ENVELOPE_CLOSE: &str = "</s:Body></s:Envelope>\r\n";

/// The response envelope of `action` of `service` with output arguments `args`.
#[must_use]
pub fn response(service: &str, action: &str, args: &[(&str, String)]) -> String {
    let mut out = String::from(ENVELOPE_OPEN);
    let _ = write!(out, r#"<u:{action}Response xmlns:u="{}">"#, escape(service));
    for (name, value) in args {
        if value.starts_with("<?xml") && !value.contains("]]>") {
            // An XML document as a value (GetListOfPortMappings) goes in CDATA, as miniupnpd
            // sends it: minixml-based clients (miniupnpc) do not unescape entities.
            let _ = write!(out, "<{name}><![CDATA[{value}]]></{name}>");
        } else {
            let _ = write!(out, "<{name}>{}</{name}>", escape(value.as_str()));
        }
    }
    let _ = write!(out, "</u:{action}Response>{ENVELOPE_CLOSE}");
    out
}

/// The UPnP fault envelope for `code` (sent with HTTP 500).
#[must_use]
pub fn fault(code: u16, description: &str) -> String {
    format!(
        "{ENVELOPE_OPEN}<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>\
         <detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>{code}</errorCode>\
         <errorDescription>{}</errorDescription></UPnPError></detail></s:Fault>{ENVELOPE_CLOSE}",
        escape(description)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(body: &str) -> String {
        format!(
            r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>{body}</s:Body></s:Envelope>"#
        )
    }

    #[test]
    fn parses_what_miniupnpc_sends() {
        let body = envelope(
            r#"<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"><NewRemoteHost></NewRemoteHost><NewExternalPort>8080</NewExternalPort><NewProtocol>TCP</NewProtocol><NewPortMappingDescription>a &amp; b &#x41;</NewPortMappingDescription><NewEnabled/></u:AddPortMapping>"#,
        );
        let r = parse(&body).expect("parse");
        assert_eq!(r.service, "urn:schemas-upnp-org:service:WANIPConnection:1");
        assert_eq!(r.action, "AddPortMapping");
        assert_eq!(r.arg("NewRemoteHost"), Some(""));
        assert_eq!(r.arg("NewExternalPort"), Some("8080"));
        assert_eq!(r.arg("NewPortMappingDescription"), Some("a & b A"));
        assert_eq!(r.arg("NewEnabled"), Some(""));
        assert_eq!(r.arg("NewLeaseDuration"), None);
    }

    #[test]
    fn a_header_and_other_prefixes_are_fine() {
        let body = r#"<E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/"><E:Header><x>1</x></E:Header><E:Body><m:GetExternalIPAddress xmlns:m="urn:schemas-upnp-org:service:WANIPConnection:2"/></E:Body></E:Envelope>"#;
        let r = parse(body).expect("parse");
        assert_eq!(r.action, "GetExternalIPAddress");
        assert!(r.args.is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_request() {
        assert_eq!(parse(""), Err(SoapError::NoEnvelope));
        assert_eq!(parse("<a/>"), Err(SoapError::NoEnvelope));
        assert_eq!(parse(&envelope("")), Err(SoapError::NoAction));
        assert_eq!(parse(&envelope("<Foo/>")), Err(SoapError::NoNamespace));
        assert!(matches!(
            parse(&envelope("<u:A xmlns:u=\"x\"><B>")),
            Err(SoapError::Xml(_))
        ));
        assert!(matches!(
            parse(&envelope("<u:A xmlns:u=\"x\"><B><C/></B></u:A>")),
            Err(SoapError::Xml(_))
        ));
        let dtd = format!(
            r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>{}"#,
            envelope("<u:A xmlns:u=\"x\"><B>&e;</B></u:A>")
        );
        assert_eq!(parse(&dtd), Err(SoapError::Doctype));
        assert_eq!(
            parse(&envelope("<u:A xmlns:u=\"x\"><B>&e;</B></u:A>")),
            Err(SoapError::Entity("e".into()))
        );
        let many = (0..=MAX_ARGS).fold(String::new(), |mut s, i| {
            let _ = write!(s, "<A{i}>1</A{i}>");
            s
        });
        assert_eq!(
            parse(&envelope(&format!("<u:A xmlns:u=\"x\">{many}</u:A>"))),
            Err(SoapError::TooManyArgs)
        );
        let long = "x".repeat(MAX_VALUE + 1);
        assert_eq!(
            parse(&envelope(&format!(
                "<u:A xmlns:u=\"x\"><B>{long}</B></u:A>"
            ))),
            Err(SoapError::TooLong("B".into()))
        );
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert_eq!(
            parse(&envelope(&format!(
                "<u:A xmlns:u=\"x\"><B>1</B></u:A>{deep}"
            ))),
            Err(SoapError::TooDeep)
        );
    }

    #[test]
    fn a_namespace_reads_as_its_value_with_references_resolved() {
        // Found by the soap fuzz target: the response escapes the service type, and the
        // parser used to keep `&lt;` as written, so a service read back was not the one sent.
        let r = parse(&envelope(r#"<u:A xmlns:u="urn:a&lt;b&#x41;"></u:A>"#)).expect("parse");
        assert_eq!(r.service, "urn:a<bA");
        let back = parse(&response(&r.service, &r.action, &[])).expect("round trip");
        assert_eq!(back.service, r.service);
        assert!(matches!(
            parse(&envelope(r#"<u:A xmlns:u="urn:&e;"></u:A>"#)),
            Err(SoapError::Xml(_))
        ));
    }

    #[test]
    fn names_that_are_not_names_are_refused() {
        // Found by the soap fuzz target: an action named `A"x=<b` was taken as is and written
        // back into the response, which then did not parse.
        for body in [
            r#"<u:A"x=<b xmlns:u="x"></u:A"x=<b>"#,
            r#"<u:A xmlns:u="x"><B="1"></B="1"></u:A>"#,
        ] {
            assert!(
                matches!(parse(&envelope(body)), Err(SoapError::Xml(_))),
                "{body}"
            );
        }
        let ok = parse(&envelope(
            r#"<u:Add_Port-Mapping.2 xmlns:u="x"><New_Arg-1>1</New_Arg-1></u:Add_Port-Mapping.2>"#,
        ));
        assert_eq!(ok.expect("names").action, "Add_Port-Mapping.2");
    }

    #[test]
    fn responses_escape_their_values() {
        let out = response(
            "urn:schemas-upnp-org:service:WANIPConnection:1",
            "GetSpecificPortMappingEntry",
            &[("NewPortMappingDescription", "<a&b>".to_owned())],
        );
        assert!(
            out.contains("<NewPortMappingDescription>&lt;a&amp;b&gt;</NewPortMappingDescription>")
        );
        let back = parse(&out.replace("Response", "")).expect("round trip");
        assert_eq!(back.arg("NewPortMappingDescription"), Some("<a&b>"));
        let listing = response(
            "x",
            "GetListOfPortMappings",
            &[(
                "NewPortListing",
                "<?xml version=\"1.0\"?><a>&lt;</a>".to_owned(),
            )],
        );
        assert!(
            listing.contains("<NewPortListing><![CDATA[<?xml"),
            "{listing}"
        );
        let back = parse(&listing.replace("Response", "")).expect("cdata round trip");
        assert_eq!(
            back.arg("NewPortListing"),
            Some("<?xml version=\"1.0\"?><a>&lt;</a>")
        );
        let f = fault(718, "ConflictInMappingEntry");
        assert!(f.contains("<errorCode>718</errorCode>"));
    }
}
