//! The JSON mapping: the examples and errors of `docs/json-mapping.md`.
#![cfg(feature = "json")]

use serde_json::{Value, json};
use steinadler_core::json::{JsonError, parse_json, term_from_json, term_to_json};
use steinadler_core::{Pid, Ref, Term};

/// Asserts `input` reads as the Term printed `display`, and writes back as `output`.
fn example(input: &str, display: &str, output: &str) {
    let term = parse_json(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    assert_eq!(term.to_string(), display, "{input}");
    let out: Value = serde_json::from_str(output).unwrap();
    assert_eq!(term_to_json(&term), out, "{input}");
    assert_eq!(term_from_json(&out), Ok(term), "{input}");
}

#[test]
fn doc_examples() {
    example(
        r#"[1, {"$atom": "ok"}]"#,
        "[1, ok]",
        r#"[1,{"$atom":"ok"}]"#,
    );
    let tuple = r#"{"$tuple": [{"$atom": "ok"}, "x", {"$bytes": "AQI="}]}"#;
    example(tuple, r#"{ok, "x", <<1,2>>}"#, tuple);
    example(
        r#"{"a": 1, "b": [true, null]}"#,
        r#"#{"a" => 1, "b" => [true, nil]}"#,
        r#"{"a":1,"b":[true,null]}"#,
    );
    example(
        r#"{"$map": [[1, "one"]]}"#,
        r#"#{1 => "one"}"#,
        r#"{"$map":[[1,"one"]]}"#,
    );
    example(
        r#"{"$map": [["$atom", 1]]}"#,
        r##"#{"$atom" => 1}"##,
        r#"{"$map":[["$atom",1]]}"#,
    );
    example(
        r#"{"$atom": "ok", "x": 1}"#,
        r##"#{"$atom" => "ok", "x" => 1}"##,
        r#"{"$atom":"ok","x":1}"#,
    );
    let point = r#"{"$struct": {"name": "Point", "fields": {"x": 1, "y": 2}}}"#;
    example(point, "#Point{x: 1, y: 2}", point);
    let pid = r#"{"$pid": {"node": "n1", "incarnation": 1, "id": 7}}"#;
    example(pid, "<n1.1.7>", pid);
    let r = r#"{"$ref": {"node": "n1", "incarnation": 1, "id": 9}}"#;
    example(r, "#Ref<n1.1.9>", r);
    example("2.0", "2.0", "2.0");
    example(r#"{"$float": "-inf"}"#, "-inf", r#"{"$float":"-inf"}"#);
    example("{}", "#{}", "{}");
}

#[test]
fn table_rows() {
    assert_eq!(parse_json("null"), Ok(Term::Nil));
    assert_eq!(parse_json("true"), Ok(Term::Bool(true)));
    assert_eq!(parse_json("-42"), Ok(Term::Int(-42)));
    assert_eq!(parse_json("1"), Ok(Term::Int(1)));
    assert_eq!(parse_json("1.0"), Ok(Term::Float(1.0)));
    assert_eq!(parse_json("1e300"), Ok(Term::Float(1e300)));
    assert_eq!(parse_json(r#""hello""#), Ok(Term::from("hello")));
    assert_eq!(
        parse_json(r#"{"$bytes": "AQID"}"#),
        Ok(Term::bytes([1, 2, 3]))
    );
    assert_eq!(parse_json(r#"{"$float": 1}"#), Ok(Term::Float(1.0)));
    assert_eq!(
        parse_json(r#"{"$float": "Infinity"}"#),
        Ok(Term::Float(f64::INFINITY))
    );
    assert_eq!(
        parse_json(r#"{"$map": [[1, "one"], [{"$atom": "k"}, null]]}"#),
        Ok(Term::map([
            (1.into(), "one".into()),
            (Term::atom("k"), Term::Nil)
        ]))
    );
    assert_eq!(
        parse_json(r#"{"$pid": {"node": "n", "incarnation": 18446744073709551615, "id": 0}}"#),
        Ok(Term::Pid(Pid {
            node: "n".into(),
            incarnation: u64::MAX,
            id: 0
        }))
    );
    assert_eq!(
        parse_json(r#"{"$ref": {"id": 2, "node": "n", "incarnation": 1}}"#),
        Ok(Term::Ref(Ref {
            node: "n".into(),
            incarnation: 1,
            id: 2
        }))
    );
    assert_eq!(
        parse_json(r#"{"$struct": {"name": "E"}}"#),
        Ok(Term::new_struct::<&str>("E", []))
    );
}

#[test]
fn floats_print_with_a_fraction() {
    assert_eq!(term_to_json(&Term::Float(1.0)).to_string(), "1.0");
    assert_eq!(
        term_to_json(&Term::Float(f64::NAN)),
        json!({"$float": "NaN"})
    );
    assert_eq!(
        term_to_json(&Term::Float(f64::INFINITY)),
        json!({"$float": "inf"})
    );
}

#[test]
fn ambiguous_maps_are_escaped() {
    let lone_dollar = Term::map([("$tuple".into(), Term::List(vec![]))]);
    assert_eq!(
        term_to_json(&lone_dollar),
        json!({"$map": [["$tuple", []]]})
    );
    let repeated = Term::map([("a".into(), 1.into()), ("a".into(), 2.into())]);
    assert_eq!(
        term_to_json(&repeated),
        json!({"$map": [["a", 1], ["a", 2]]})
    );
    assert_eq!(term_from_json(&term_to_json(&repeated)), Ok(repeated));
    let two = Term::map([("$a".into(), 1.into()), ("$b".into(), 2.into())]);
    assert_eq!(term_to_json(&two), json!({"$a": 1, "$b": 2}));
}

#[test]
fn repeated_struct_fields_use_pairs() {
    let t = Term::new_struct("S", [("x", Term::from(1)), ("x", Term::from(2))]);
    let v = term_to_json(&t);
    assert_eq!(
        v,
        json!({"$struct": {"name": "S", "fields": [["x", 1], ["x", 2]]}})
    );
    assert_eq!(term_from_json(&v), Ok(t));
}

#[test]
fn unknown_tag_names_the_known_tags() {
    let err = parse_json(r#"{"$atm": "ok"}"#).unwrap_err();
    assert_eq!(err, JsonError::UnknownTag { tag: "$atm".into() });
    let msg = err.to_string();
    for tag in [
        "$atom", "$bytes", "$tuple", "$struct", "$pid", "$ref", "$map", "$float",
    ] {
        assert!(msg.contains(tag), "{msg}");
    }
    assert!(matches!(
        parse_json(r#"{"$": 1}"#),
        Err(JsonError::UnknownTag { .. })
    ));
}

#[test]
fn bad_base64_is_an_error() {
    assert!(matches!(
        parse_json(r#"{"$bytes": "not base64!"}"#),
        Err(JsonError::InvalidBase64(_))
    ));
    assert!(matches!(
        parse_json(r#"{"$bytes": "AQI"}"#),
        Err(JsonError::InvalidBase64(_))
    ));
}

#[test]
fn malformed_tags_are_errors() {
    let invalid = |s: &str| match parse_json(s) {
        Err(JsonError::InvalidTag { tag, reason }) => format!("{tag}: {reason}"),
        other => panic!("{s}: expected InvalidTag, got {other:?}"),
    };
    assert_eq!(
        invalid(r#"{"$atom": 1}"#),
        "$atom: expected a string, found a number"
    );
    assert_eq!(
        invalid(r#"{"$bytes": [1]}"#),
        "$bytes: expected a base64 string, found an array"
    );
    assert_eq!(
        invalid(r#"{"$tuple": {}}"#),
        "$tuple: expected an array, found an object"
    );
    assert!(invalid(r#"{"$map": [[1]]}"#).starts_with("$map: expected a [key, value] pair"));
    assert!(
        invalid(r#"{"$map": {}}"#).starts_with("$map: expected an array of [key, value] pairs")
    );
    assert!(invalid(r#"{"$struct": {"name": 1}}"#).contains("\"name\" must be a string"));
    assert!(invalid(r#"{"$struct": {"fields": {}}}"#).contains("missing \"name\""));
    assert!(
        invalid(r#"{"$struct": {"name": "P", "extra": 1}}"#).contains("unexpected key \"extra\"")
    );
    assert!(
        invalid(r#"{"$pid": {"node": "n1", "id": 7}}"#)
            .contains("\"incarnation\" must be an integer")
    );
    assert!(
        invalid(r#"{"$ref": {"node": "n", "incarnation": -1, "id": 7}}"#)
            .contains("\"incarnation\"")
    );
    assert!(
        invalid(r#"{"$pid": {"node": 1, "incarnation": 1, "id": 7}}"#)
            .contains("\"node\" must be a string")
    );
    assert!(invalid(r#"{"$float": "fast"}"#).contains("\"fast\""));
}

#[test]
fn integers_beyond_i64_are_errors() {
    let out_of_range = |s: &str| JsonError::IntegerOutOfRange { literal: s.into() };
    assert_eq!(
        parse_json("9223372036854775808"),
        Err(out_of_range("9223372036854775808"))
    );
    assert_eq!(
        parse_json("[-9223372036854775809]"),
        Err(out_of_range("-9223372036854775809"))
    );
    assert_eq!(
        parse_json("[99999999999999999999999]"),
        Err(out_of_range("99999999999999999999999"))
    );
    assert_eq!(
        term_from_json(&json!(u64::MAX)),
        Err(out_of_range("18446744073709551615"))
    );
    // Digits inside strings are not numbers; floats may be large.
    assert_eq!(
        parse_json(r#""99999999999999999999999""#),
        Ok(Term::from("99999999999999999999999"))
    );
    assert_eq!(
        parse_json(r#"{"k\"99999999999999999999": 1e30}"#).map(|t| t.to_string()),
        Ok(r##"#{"k\"99999999999999999999" => 1e30}"##.into())
    );
    assert_eq!(parse_json("-9223372036854775808"), Ok(Term::Int(i64::MIN)));
}

#[test]
fn deep_json_is_an_error_not_a_stack_overflow() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    assert!(matches!(parse_json(&deep), Err(JsonError::Parse(_))));
    // A value built in memory is bounded by the Term depth limit.
    let mut v = json!(null);
    for _ in 0..200 {
        v = json!({"$tuple": [v]});
    }
    assert_eq!(term_from_json(&v), Err(JsonError::TooDeep { limit: 128 }));
    let mut v = json!(null);
    for _ in 0..128 {
        v = json!([v]);
    }
    assert!(term_from_json(&v).is_ok());
    assert_eq!(
        term_from_json(&json!([v])),
        Err(JsonError::TooDeep { limit: 128 })
    );
}

#[test]
fn invalid_json_is_a_parse_error() {
    let err = parse_json("[1,").unwrap_err();
    assert!(matches!(err, JsonError::Parse(_)));
    assert!(err.to_string().starts_with("invalid JSON: "), "{err}");
}
