//! The API's documentation: every response of the OpenAPI document has a concrete schema
//! (no bare `Object`), money, rates and dates say their units, the main read routes answer what
//! their schemas declare, and the interactive reference at `/api/v1/docs` is served from the
//! binary with nothing fetched from another origin.

mod support;

use serde_json::{Value, json};
use support::{TestApp, TestResponse, http};

/// Follows a local `$ref` such as `#/components/schemas/ApplicationsPage`.
fn resolve<'a>(document: &'a Value, reference: &str) -> &'a Value {
    reference
        .strip_prefix("#/")
        .and_then(|path| path.split('/').try_fold(document, |node, key| node.get(key)))
        .unwrap_or_else(|| panic!("dangling {reference}"))
}

/// The schema itself, its `$ref` followed.
fn concrete<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => concrete(document, resolve(document, reference)),
        None => schema,
    }
}

fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// The one schema allowed to leave its fields open: an event's own data, whose fields depend
/// on its type (and which says so with `additionalProperties: true`).
const OPEN_BY_DESIGN: [&str; 1] = ["#/components/schemas/EventData"];

/// Every bare object (no properties, no typed additional properties) reachable from `schema`,
/// named by its path.
fn bare_objects(document: &Value, schema: &Value, at: &str, seen: &mut Vec<String>, found: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        if OPEN_BY_DESIGN.contains(&reference) || seen.iter().any(|done| done == reference) {
            return;
        }
        seen.push(reference.to_string());
        return bare_objects(document, resolve(document, reference), reference, seen, found);
    }
    let has_properties = schema.get("properties").and_then(Value::as_object).is_some_and(|map| !map.is_empty());
    let typed_additional = schema.get("additionalProperties").is_some_and(Value::is_object);
    let composed = ["oneOf", "anyOf", "allOf"].iter().any(|key| schema.get(*key).is_some());
    let untyped = schema.as_object().is_some_and(|map| map.keys().all(|key| key == "description"));
    if untyped || (types(schema).contains(&"object") && !has_properties && !typed_additional && !composed) {
        found.push(at.to_string());
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            bare_objects(document, property, &format!("{at}.{name}"), seen, found);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(key).filter(|inner| inner.is_object()) {
            bare_objects(document, inner, &format!("{at}.{key}"), seen, found);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for (n, inner) in schema.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            bare_objects(document, inner, &format!("{at}.{key}[{n}]"), seen, found);
        }
    }
}

/// Every property of the schemas named (`$ref`s) whose name or format says it is money, a rate
/// or a date, without a description saying so.
fn undocumented_units(document: &Value, references: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    for schema_name in references {
        let schema = resolve(document, schema_name);
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            let description = property["description"].as_str().unwrap_or_default();
            let is_date = property["format"] == "date" || types(property).is_empty() && name.ends_with("_on");
            let wanted = if name.ends_with("_cents") {
                Some("cents")
            } else if name.ends_with("_bps") {
                Some("basis points")
            } else if is_date {
                Some("YYYY-MM-DD")
            } else {
                None
            };
            if let Some(wanted) = wanted
                && !description.contains(wanted)
            {
                missing.push(format!("{schema_name}.{name} (wants {wanted:?}): {description:?}"));
            }
        }
    }
    missing
}

async fn document(app: &TestApp) -> Value {
    let response = http(app.port, "GET", "/api/v1/openapi.json", &[], None).await;
    assert_eq!(response.status, 200);
    response.json()
}

#[tokio::test]
async fn every_response_of_the_document_has_a_concrete_schema_with_its_units() {
    let app = TestApp::spawn().await;
    let document = document(&app).await;
    let paths = document["paths"].as_object().expect("paths");
    let mut bare = Vec::new();
    let mut seen = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let response = concrete(&document, response);
                for (media, content) in response["content"].as_object().into_iter().flatten() {
                    let at = format!("{method} {path} {status} {media}");
                    bare_objects(&document, &content["schema"], &at, &mut seen, &mut bare);
                }
                // A JSON read answers with its schema; the document, the metrics and the exports
                // (files: CSV or XLSX) are the only 200s that are not JSON of this API.
                let answers_files = response["content"].as_object().is_some_and(|content| {
                    !content.is_empty()
                        && content.keys().all(|media| {
                            media == "text/csv"
                                || media == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
                        })
                });
                let reads_json = method == "get"
                    && status == "200"
                    && path.starts_with("/api/v1/")
                    && path != "/api/v1/openapi.json"
                    && !answers_files;
                if reads_json {
                    let schema = &response["content"]["application/json"]["schema"];
                    assert!(schema.is_object(), "{method} {path} declares no JSON schema for 200");
                    let schema = concrete(&document, schema);
                    assert!(
                        schema.get("properties").is_some() || schema.get("items").is_some(),
                        "{method} {path}: 200 is not a typed object: {schema}"
                    );
                }
            }
        }
    }
    assert_eq!(bare, Vec::<String>::new(), "objects without properties in responses");
    // The detector itself: what utoipa writes for `body = Object`, an open map that is not the
    // event data, and a schema with nothing but a description are all caught.
    let planted = json!({"components": {"schemas": {"Open": {"type": "object", "additionalProperties": true}}}});
    for schema in [json!({"type": "object"}), json!({"$ref": "#/components/schemas/Open"}), json!({"description": "x"})]
    {
        let mut caught = Vec::new();
        bare_objects(&planted, &schema, "planted", &mut Vec::new(), &mut caught);
        assert_eq!(caught.len(), 1, "{schema}");
    }
    // `seen` holds every schema the responses reach.
    assert!(seen.len() > 20, "{seen:?}");
    let missing = undocumented_units(&document, &seen);
    assert_eq!(missing, Vec::<String>::new(), "money, rates and dates of responses without their units");

    // A sample: the applications list's items, as generated clients see them.
    let list = concrete(&document, &paths["/api/v1/applications"]["get"]["responses"]["200"]);
    let page = concrete(&document, &list["content"]["application/json"]["schema"]);
    let row = concrete(&document, &page["properties"]["items"]["items"]);
    for field in ["application_id", "status", "batch_id", "organisation", "submitted_on", "disbursed_cents"] {
        assert!(row["properties"].get(field).is_some(), "applications list items lack {field}: {row}");
        assert!(row["required"].as_array().is_some_and(|r| r.contains(&json!(field))), "{field} is required");
    }
    assert_eq!(row["properties"]["submitted_on"]["format"], "date");
    assert!(types(&row["properties"]["ceiling_cents"]).contains(&"null"), "a ceiling is absent before approval");
    let dashboard = concrete(&document, &paths["/api/v1/kpis"]["get"]["responses"]["200"]);
    let dashboard = concrete(&document, &dashboard["content"]["application/json"]["schema"]);
    let budget_line = concrete(&document, &dashboard["properties"]["budget"]["items"]);
    assert!(
        budget_line["properties"]["received_cents"]["description"].as_str().is_some_and(|d| d.contains("HK cents"))
    );
    app.stop().await;
}

/// Checks a served value against its declared schema: types, required fields, nullability,
/// items and nested objects; a field the schema does not declare is a mismatch too (the schema
/// would be out of date). Returns every mismatch with its JSON path.
fn mismatches(document: &Value, schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    let schema = concrete(document, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(choices) = schema.get(key).and_then(Value::as_array) {
            let fits = choices.iter().any(|choice| {
                let mut inner = Vec::new();
                mismatches(document, choice, value, at, &mut inner);
                inner.is_empty()
            });
            if !fits {
                found.push(format!("{at}: fits none of {key} {schema}"));
            }
            return;
        }
    }
    let declared = types(schema);
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits =
        declared.is_empty() || declared.contains(&actual) || (actual == "integer" && declared.contains(&"number"));
    if !fits {
        found.push(format!("{at}: {actual} where the schema says {declared:?}"));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        found.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::Object(map) => {
            let properties = schema["properties"].as_object();
            for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !map.contains_key(required) {
                    found.push(format!("{at}: required {required} is missing"));
                }
            }
            for (key, field) in map {
                match (properties.and_then(|p| p.get(key)), schema.get("additionalProperties")) {
                    (Some(property), _) => mismatches(document, property, field, &format!("{at}.{key}"), found),
                    (None, Some(additional)) if additional.is_object() => {
                        mismatches(document, additional, field, &format!("{at}.{key}"), found)
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) => found.push(format!("{at}: {key} is not in the schema")),
                }
            }
        }
        Value::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                mismatches(document, &schema["items"], item, &format!("{at}[{n}]"), found);
            }
        }
        _ => {}
    }
}

#[track_caller]
fn ok(response: &TestResponse) -> Value {
    assert!(response.status < 300, "{} {}", response.status, response.body);
    response.json()
}

/// The set-up, an application approved under agreement, and a month of its usage charged
/// (one line reversed, one imported): every read route has something to answer.
async fn a_scheme_in_use(app: &TestApp) -> String {
    ok(&app
        .post(
            "committee_secretariat",
            "/api/v1/batches",
            &[],
            r#"{"batch_id": "2025-q2", "deadline": "2025-05-31", "committee_date": "2025-06-15"}"#,
        )
        .await);
    ok(&app
        .post(
            "finance_officer",
            "/api/v1/funding-years/2025-26/receipts",
            &[],
            r#"{"line": "computing_power_subsidy", "amount_cents": 85700000000, "received_on": "2025-04-01"}"#,
        )
        .await);
    ok(&app.post("administrator", "/api/v1/price-schedule/rates", &[], r#"{"service_type": "gpu_node_hour_h800", "rate_per_unit_cents": 4250, "unit": "node-hour", "effective_from": "2025-04-01"}"#).await);
    let months = ["2025-07", "2025-08", "2025-09"];
    for month in months {
        let body = json!({"service_type": "gpu_node_hour_h800", "period": month, "units": 10000}).to_string();
        ok(&app.post("administrator", "/api/v1/capacity", &[], &body).await);
    }
    app.set_day(2025, 5, 2);
    let submission = json!({
        "organisation": "The Chinese University of Hong Kong", "category": "local_institution",
        "sub_type": "ugc_funded_university", "project_title": "Medical imaging foundation model",
        "project_summary": "Pre-training on de-identified scans.", "develops_ai_models": true,
        "requested_resources": [{"service_type": "gpu_node_hour_h800", "first_period": "2025-07", "last_period": "2025-09", "units_per_month": 1000}],
        "requested_rate_bps": 7000, "team_size": 14, "talents": 9, "mainland_or_overseas_team": false,
        "other_government_funding": false, "undertakings": null,
        "contact": {"name": "Prof Wong", "email": "wong@cuhk.edu.hk"}
    });
    let submitted = app.post("intake_officer", "/api/v1/applications", &[], &submission.to_string()).await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let id = submitted.header("location").and_then(|l| l.rsplit('/').next()).expect("Location").to_string();
    let base = format!("/api/v1/applications/{id}");
    app.set_day(2025, 6, 2);
    ok(&app.post("intake_officer", &format!("{base}/eligibility-check"), &[], "{}").await);
    ok(&app.post("committee_secretariat", "/api/v1/batches/2025-q2/closure", &[], "{}").await);
    let assessment = json!({"scores": {"a_meets_hong_kong_needs": 8, "b_requirement_reasonable": 7, "c_feasibility_and_outcome": 8, "d_capability": 9}, "recommended_rate_bps": 7000, "recommended_ceiling_cents": 50_000_000, "duration_months": 3, "no_conflict_declared": true});
    ok(&app.post("assessor", &format!("{base}/assessment"), &[], &assessment.to_string()).await);
    app.set_day(2025, 6, 15);
    let allocations: Vec<Value> = months
        .iter()
        .map(|month| json!({"service_type": "gpu_node_hour_h800", "period": month, "units": 1000}))
        .collect();
    let approval = json!({
        "meeting": {"meeting_reference": "AISC-COM-2025-06", "decided_on": "2025-06-15", "members_present": ["m1", "m2", "m3"], "members_recused": []},
        "rate_bps": 7000, "exceptional_reason": null, "allocations": allocations,
        "start": "2025-07-01", "end": "2025-09-30", "conditions": ["monthly utilisation report"]
    });
    ok(&app.post("committee_secretariat", &format!("{base}/approval"), &[], &approval.to_string()).await);
    app.set_day(2025, 6, 30);
    let agreement = r#"{"signed_on": "2025-06-30", "reporting_due_dates": ["2025-10-15"]}"#;
    ok(&app.post("committee_secretariat", &format!("{base}/agreement"), &[], agreement).await);
    app.set_day(2025, 9, 5);
    for (usage_id, month) in [("sched-2025-07", "2025-07"), ("sched-2025-08", "2025-08")] {
        let usage = json!({"usage_id": usage_id, "service_type": "gpu_node_hour_h800", "period": month, "units": 400});
        ok(&app.post("finance_officer", &format!("{base}/usage"), &[], &usage.to_string()).await);
    }
    ok(&app
        .post(
            "finance_officer",
            &format!("{base}/usage/sched-2025-08/reversal"),
            &[],
            r#"{"reason": "double-metered"}"#,
        )
        .await);
    id
}

#[tokio::test]
async fn the_main_read_routes_answer_what_their_schemas_declare() {
    let app = TestApp::spawn().await;
    let id = a_scheme_in_use(&app).await;
    let document = document(&app).await;

    // A partial import with one refused line: its report, refused lines included.
    let csv = format!(
        "project,service_type,units,period\n{id},gpu_node_hour_h800,300,2025-09\n{id},no_such_service,1,2025-09\n"
    );
    let bearer = app.bearer("finance_officer");
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "text/csv")];
    let import = http(app.port, "POST", "/api/v1/usage-imports?mode=partial", &headers, Some(&csv)).await;
    let import_report = ok(&import);
    assert_eq!(import_report["refused"].as_array().map(Vec::len), Some(1), "{import_report}");
    let last_position = import_report["last_position"].as_u64().expect("a position written");
    let after = format!("after_position={last_position}");

    let reads = [
        ("/api/v1/applications".to_string(), format!("/api/v1/applications?{after}")),
        ("/api/v1/applications/{application_id}/usage".to_string(), format!("/api/v1/applications/{id}/usage?{after}")),
        ("/api/v1/batches/{batch_id}/queue".to_string(), format!("/api/v1/batches/2025-q2/queue?{after}")),
        (
            "/api/v1/funding-years/{year}/disbursements".to_string(),
            format!("/api/v1/funding-years/2025-26/disbursements?{after}"),
        ),
        ("/api/v1/funding-years/{year}".to_string(), format!("/api/v1/funding-years/2025-26?{after}")),
        ("/api/v1/batches".to_string(), "/api/v1/batches".to_string()),
        ("/api/v1/price-schedule".to_string(), "/api/v1/price-schedule".to_string()),
        ("/api/v1/capacity".to_string(), "/api/v1/capacity".to_string()),
        ("/api/v1/applications/{application_id}".to_string(), format!("/api/v1/applications/{id}")),
        ("/api/v1/events".to_string(), "/api/v1/events".to_string()),
        ("/api/v1/streams/{stream_id}".to_string(), format!("/api/v1/streams/application-{id}")),
        ("/api/v1/audit-trail".to_string(), format!("/api/v1/audit-trail?{after}")),
        ("/api/v1/projections".to_string(), "/api/v1/projections".to_string()),
        ("/api/v1/audit/verification".to_string(), "/api/v1/audit/verification".to_string()),
    ];
    let mut found = Vec::new();
    let mut check = |documented: &str, method: &str, value: &Value| {
        let response = concrete(&document, &document["paths"][documented][method]["responses"]["200"]);
        let schema = &response["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {documented}: no schema");
        mismatches(&document, schema, value, &format!("{method} {documented}"), &mut found);
    };
    check("/api/v1/usage-imports", "post", &import_report);
    for (documented, concrete_path) in &reads {
        let role = if documented.starts_with("/api/v1/events")
            || documented.starts_with("/api/v1/streams")
            || documented.starts_with("/api/v1/projections")
            || documented.starts_with("/api/v1/audit")
        {
            "auditor"
        } else {
            "finance_officer"
        };
        let value = ok(&app.get(role, concrete_path).await);
        check(documented, "get", &value);
    }
    // Kpis wait on their own read model.
    let kpis = ok(&app.get("finance_officer", &format!("/api/v1/kpis?year=2025-26&{after}")).await);
    check("/api/v1/kpis", "get", &kpis);
    assert_eq!(found, Vec::<String>::new(), "served responses that differ from their schemas");

    // The figures are there to be checked, not empty lists passing vacuously.
    let usage = ok(&app.get("finance_officer", &format!("/api/v1/applications/{id}/usage")).await);
    assert_eq!(usage["lines"].as_array().map(Vec::len), Some(3), "{usage}");
    assert_eq!(usage["totals"]["units"], 700, "the reversed line is not counted: {usage}");
    assert!(kpis["budget"].as_array().is_some_and(|lines| !lines.is_empty()), "{kpis}");

    // And the checker does catch a response that drifted from its schema.
    let mut drifted = ok(&app.get("finance_officer", "/api/v1/applications").await);
    drifted["items"][0].as_object_mut().expect("a row").remove("status");
    drifted["items"][0]["disbursed_cents"] = json!("12.50");
    drifted["items"][0]["usage_forecast"] = json!(1);
    let mut caught = Vec::new();
    let list = concrete(&document, &document["paths"]["/api/v1/applications"]["get"]["responses"]["200"]);
    mismatches(&document, &list["content"]["application/json"]["schema"], &drifted, "list", &mut caught);
    assert_eq!(caught.len(), 3, "{caught:?}");
    let mut application = ok(&app.get("finance_officer", &format!("/api/v1/applications/{id}")).await);
    application["state"]["status"] = json!("under agreement");
    let mut caught = Vec::new();
    let one =
        concrete(&document, &document["paths"]["/api/v1/applications/{application_id}"]["get"]["responses"]["200"]);
    mismatches(&document, &one["content"]["application/json"]["schema"], &application, "one", &mut caught);
    assert_eq!(caught.len(), 1, "a status outside the enum: {caught:?}");
    app.stop().await;
}

/// Absolute URLs in a text: `http://` or `https://`, and protocol-relative `//host` in an
/// attribute.
fn absolute_urls(text: &str) -> Vec<String> {
    let mut urls: Vec<String> = ["http://", "https://", "\"//", "'//"]
        .iter()
        .flat_map(|start| text.match_indices(start).map(|(at, _)| text[at..].chars().take(60).collect::<String>()))
        .collect();
    urls.sort();
    urls
}

/// The `src` and `href` attributes of a page.
fn references(page: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|start| page.match_indices(start).map(|(at, _)| &page[at + start.len()..]))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_api_reference_is_served_from_the_binary_without_a_token_or_another_origin() {
    let app = TestApp::spawn().await;
    let page = http(app.port, "GET", "/api/v1/docs", &[], None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let policy = page.header("content-security-policy").expect("a Content-Security-Policy");
    assert!(policy.starts_with("default-src 'self';"), "{policy}");
    for directive in policy.split(';').map(str::trim) {
        let sources = directive.split_whitespace().skip(1);
        for source in sources {
            assert!(
                ["'self'", "'none'", "data:"].contains(&source),
                "{directive}: only this origin (and inline data: images) may be loaded"
            );
        }
    }
    assert_eq!(absolute_urls(&page.body), Vec::<String>::new(), "the page names no other origin");
    assert!(page.body.contains("data-spec=\"openapi.json\""), "the document is loaded relatively: {}", page.body);

    // Every script, stylesheet and icon the page names is served, relative to /api/v1/docs.
    let named = references(&page.body);
    assert_eq!(named.iter().filter(|r| r.starts_with("docs/assets/")).count(), 4, "{named:?}");
    let mut scripts = String::new();
    for reference in named.iter().filter(|r| r.starts_with("docs/assets/")) {
        let asset = http(app.port, "GET", &format!("/api/v1/{reference}"), &[], None).await;
        assert_eq!(asset.status, 200, "{reference}: {}", asset.body);
        let name = reference.split('?').next().unwrap_or_default();
        let expected = match name.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("png") => "image/png",
            other => panic!("unexpected asset {other:?}"),
        };
        assert_eq!(asset.header("content-type"), Some(expected), "{reference}");
        assert_eq!(asset.header("cache-control"), Some("public, max-age=31536000, immutable"), "{reference}");
        assert_eq!(asset.header("x-content-type-options"), Some("nosniff"));
        if name.ends_with(".js") {
            scripts.push_str(&asset.body);
        }
        // Nothing from a content delivery network, no source map to fetch.
        for host in ["unpkg.com", "jsdelivr", "cdnjs", "googleapis", "sourceMappingURL"] {
            assert!(!asset.body.contains(host), "{reference} names {host}");
        }
    }
    // Our initializer: the document relatively, the bearer token typed in, no validator badge
    // fetched from swagger.io.
    let initializer = http(app.port, "GET", "/api/v1/docs/assets/api-reference.js", &[], None).await;
    assert_eq!(absolute_urls(&initializer.body), Vec::<String>::new());
    assert!(initializer.body.contains("validatorUrl: null"));
    assert!(scripts.contains("SwaggerUIBundle"), "Swagger UI is served");
    let document = document(&app).await;
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "Authorize sends a bearer token"
    );

    let unknown = http(app.port, "GET", "/api/v1/docs/assets/../openapi.json", &[], None).await;
    assert_ne!(unknown.status, 200);
    let missing = http(app.port, "GET", "/api/v1/docs/assets/index.html", &[], None).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let slash = http(app.port, "GET", "/api/v1/docs/", &[], None).await;
    assert_eq!((slash.status, slash.header("location")), (308, Some("../docs")), "{}", slash.body);
    // The rest of /api/v1 still needs a token.
    assert_eq!(http(app.port, "GET", "/api/v1/docsx", &[], None).await.status, 401);
    assert_eq!(http(app.port, "GET", "/api/v1/applications", &[], None).await.status, 401);
    app.stop().await;
}
