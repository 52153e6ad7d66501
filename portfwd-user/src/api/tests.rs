use std::collections::BTreeSet;

use super::*;

#[test]
fn the_openapi_document_names_exactly_the_routes() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if method == "parameters" {
                continue;
            }
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, served);
    // Every documented path with parameters routes when they are filled in.
    for (method, path) in &served {
        let filled = path
            .replace("{id}", "tcp:8080")
            .replace("{addr}", "10.0.0.5");
        assert_eq!(
            route(method, &filled).map(|(r, _)| r),
            Some(path.as_str()),
            "{method} {filled}"
        );
    }
}

#[test]
fn the_openapi_document_names_every_event_kind() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    let documented: Vec<&str> = doc["components"]["schemas"]["Event"]["properties"]["kind"]["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let kinds: Vec<&str> = crate::events::EventKind::ALL
        .iter()
        .map(|k| k.name())
        .collect();
    assert_eq!(documented, kinds);
}

#[test]
fn routes_take_escaped_ids_and_refuse_extra_segments() {
    let (route_, params) = route("GET", "/api/v1/shares/udp%3A53%40198.51.100.7").expect("route");
    assert_eq!(route_, "/api/v1/shares/{id}");
    assert_eq!(params, ["udp:53@198.51.100.7"]);
    assert!(route("GET", "/api/v1/shares/tcp:1/x").is_none());
    assert!(route("GET", "/api/v1/shares/").is_none());
    assert!(route("PUT", "/api/v1/shares").is_none());
    assert!(route("GET", "/api/v1/shares/%zz").is_none());
}

#[test]
fn a_method_a_path_does_not_take_is_405_with_allow() {
    // Found by schemathesis: RFC 9110 wants the methods a 405's path does take in `Allow`.
    let response = not_routed("TRACE", "/api/v1/shares/tcp:8080");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response
            .headers()
            .get(hyper::header::ALLOW)
            .map(HeaderValue::as_bytes),
        Some(&b"GET, PATCH, DELETE"[..])
    );
    let response = not_routed("GET", "/api/v1/nothing");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get(hyper::header::ALLOW).is_none());
}

#[test]
fn event_queries_outside_the_documented_ranges_are_refused() {
    // Found by schemathesis: `wait=61` and `limit=0` were clamped and answered 200, where the
    // OpenAPI document says 0-60 and 1-1000.
    assert_eq!(
        owner::events_query("after=3&limit=10&wait=60").expect("in range"),
        (Some(3), 10, Duration::from_mins(1))
    );
    assert_eq!(
        owner::events_query("").expect("defaults"),
        (None, 100, Duration::ZERO)
    );
    for (query, field) in [
        ("wait=61", "wait"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=-1", "after"),
        ("wait=1&x=2", "query"),
    ] {
        let err = owner::events_query(query).expect_err(query);
        assert_eq!(
            (err.status, err.field),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{query}"
        );
    }
}

#[test]
fn patch_bodies_are_optional_as_served() {
    // Found by schemathesis: the document required a PATCH body, the API takes none as "change
    // nothing" (as `{}`); the document now says so.
    let doc: Value = serde_json::from_str(OPENAPI).expect("json");
    for path in ["/api/v1/settings", "/api/v1/shares/{id}"] {
        assert_eq!(
            doc["paths"][path]["patch"]["requestBody"]["required"],
            Value::Bool(false),
            "{path}"
        );
    }
    assert!(settings_patch(Map::new()).is_ok());
    assert!(share_patch(Map::new()).is_ok());
}

#[tokio::test]
async fn a_body_is_nothing_or_a_json_object() {
    // Found by schemathesis: a body of blanks was taken as no body, though it is not JSON.
    let body = |text: &'static str| {
        read_body(Request::new(Full::new(Bytes::from_static(text.as_bytes()))))
    };
    assert_eq!(body("").await.expect("no body"), Map::new());
    assert_eq!(body(" {\"a\": 1}\n").await.expect("object").len(), 1);
    for bad in ["\r", "  ", "[]", "1", "{"] {
        let err = body(bad).await.expect_err(bad);
        assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
}

#[test]
fn tokens_compare_whole() {
    let header = |v: &'static str| HeaderValue::from_static(v);
    assert!(authorized("abc", Some(&header("Bearer abc"))));
    assert!(!authorized("abc", Some(&header("Bearer abd"))));
    assert!(!authorized("abc", Some(&header("Bearer ab"))));
    assert!(!authorized("abc", Some(&header("abc"))));
    assert!(!authorized("abc", None));
}

#[test]
fn bodies_name_the_field_at_fault() {
    let body = |text: &str| match serde_json::from_str::<Value>(text).expect("json") {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let field = |r: Result<SharePatch, ApiError>| r.expect_err("refused").field;
    assert_eq!(
        field(share_patch(body(r#"{"internal": "10.0.0.10"}"#))),
        Some("internal")
    );
    assert_eq!(
        field(share_patch(body(r#"{"external_port": 0}"#))),
        Some("external_port")
    );
    assert_eq!(
        field(share_patch(body(r#"{"enabled": "yes"}"#))),
        Some("enabled")
    );
    assert_eq!(
        field(share_patch(body(r#"{"name": "a\u0007"}"#))),
        Some("name")
    );
    assert_eq!(field(share_patch(body(r#"{"colour": 1}"#))), Some("body"));
    let patch = share_patch(body(r#"{"name": null, "enabled": false}"#)).expect("ok");
    assert_eq!(patch.name, Some(None));
    assert_eq!(patch.enabled, Some(false));
    let err = settings_patch(body(r#"{"quota_total": -1}"#)).expect_err("negative");
    assert_eq!(err.field, Some("quota_total"));
}

#[test]
fn table_errors_map_to_statuses() {
    let id: ShareId = "tcp:80".parse().expect("id");
    let status = |e: TableError| table_error(&e).status;
    assert_eq!(status(TableError::NoSuchShare(id)), StatusCode::NOT_FOUND);
    assert_eq!(status(TableError::Static(id)), StatusCode::CONFLICT);
    let conflict = table_error(&TableError::Conflict {
        id,
        existing: id,
        origin: crate::share::Origin::Upnp {
            client: Ipv4Addr::new(10, 0, 0, 9),
        },
    });
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.conflict, Some(id));
    assert!(
        conflict.message.contains("10.0.0.9"),
        "{}",
        conflict.message
    );
}
