//! The JSON <-> Term mapping (feature `json`), used by the CLI for arguments and results.
//!
//! This module owns the mapping that `docs/json-mapping.md` specifies: plain JSON maps to the
//! obvious Terms, and the Terms JSON lacks are single-key objects tagged `$atom`, `$bytes`,
//! `$tuple`, `$struct`, `$pid`, `$ref`, `$map` and `$float`. For every Term `t`,
//! `term_from_json(&term_to_json(&t)) == Ok(t)` (up to NaN, which is not equal to itself).
//!
//! # Examples
//!
//! ```
//! use steinadler_core::{json, Term};
//! let t = json::parse_json(r#"[1, {"$atom": "ok"}, {"$tuple": ["x", 2.5]}]"#).unwrap();
//! assert_eq!(t.to_string(), r#"[1, ok, {"x", 2.5}]"#);
//! assert_eq!(json::term_to_json(&t).to_string(), r#"[1,{"$atom":"ok"},{"$tuple":["x",2.5]}]"#);
//! ```

use crate::{Limits, Pid, Ref, Term};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};

/// The tags of single-key objects, for error messages.
const KNOWN_TAGS: &str = "$atom, $bytes, $tuple, $struct, $pid, $ref, $map, $float";

/// Why JSON could not be turned into a Term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The text is not JSON.
    #[error("invalid JSON: {0}")]
    Parse(String),
    /// A single-key object's key starts with `$` but is not a known tag.
    #[error(
        "unknown tag {tag:?}: a single-key object whose key starts with '$' must use one of the tags \
         {KNOWN_TAGS} (for a map whose only key starts with '$', write {{\"$map\": [[key, value]]}})"
    )]
    UnknownTag {
        /// The unknown key, such as `"$atm"`.
        tag: String,
    },
    /// A known tag's value has the wrong shape.
    #[error("invalid {tag} value: {reason}")]
    InvalidTag {
        /// The tag, such as `"$pid"`.
        tag: &'static str,
        /// What is wrong, and what was expected.
        reason: String,
    },
    /// A `$bytes` value is not standard base64.
    #[error(
        "invalid base64 in $bytes: {0} (expected standard base64 with padding, such as \"AQID\")"
    )]
    InvalidBase64(String),
    /// A JSON integer does not fit in an `i64`.
    #[error(
        "integer {literal} does not fit in a 64-bit signed integer (write it as a float, such as 1e19, or as a string)"
    )]
    IntegerOutOfRange {
        /// The integer as written.
        literal: String,
    },
    /// The JSON nests lists, maps, tuples or structs deeper than [`Limits::DEFAULT`] allows.
    #[error("JSON nested too deeply: more than {limit} levels of lists, maps, tuples or structs")]
    TooDeep {
        /// The depth limit.
        limit: u32,
    },
}

/// Parses JSON text into a Term.
///
/// Unlike [`term_from_json`] on an already parsed value, this also catches integer literals
/// beyond the range of `u64`, which serde_json would otherwise silently turn into floats.
///
/// # Errors
///
/// Returns [`JsonError::Parse`] if `s` is not JSON (including JSON nested more than 128 arrays
/// and objects deep, serde_json's own limit), and the errors of [`term_from_json`].
///
/// # Examples
///
/// ```
/// use steinadler_core::{json::{parse_json, JsonError}, Term};
/// assert_eq!(parse_json(r#"{"$atom": "ok"}"#), Ok(Term::atom("ok")));
/// assert!(matches!(parse_json("99999999999999999999999"), Err(JsonError::IntegerOutOfRange { .. })));
/// ```
pub fn parse_json(s: &str) -> Result<Term, JsonError> {
    let value: Value = serde_json::from_str(s).map_err(|e| JsonError::Parse(e.to_string()))?;
    check_integer_literals(s)?;
    term_from_json(&value)
}

/// Rejects integer literals (numbers without `.`, `e` or `E`) beyond `i64` and `u64` in valid
/// JSON text: serde_json would silently turn them into floats.
fn check_integer_literals(s: &str) -> Result<(), JsonError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let literal = &s[start..i];
                // Within u64, serde_json keeps integers exact and `term_from_json` checks them.
                let integer = !literal.contains(['.', 'e', 'E']);
                if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                    return Err(JsonError::IntegerOutOfRange {
                        literal: literal.to_owned(),
                    });
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Converts a JSON value into a Term, by the mapping of `docs/json-mapping.md`.
///
/// # Errors
///
/// Returns [`JsonError::UnknownTag`] for a single-key object with an unknown `$` key,
/// [`JsonError::InvalidTag`] or [`JsonError::InvalidBase64`] for a malformed tagged value,
/// [`JsonError::IntegerOutOfRange`] for an integer above `i64::MAX`, and
/// [`JsonError::TooDeep`] past [`Limits::DEFAULT`]'s depth.
///
/// # Examples
///
/// ```
/// use steinadler_core::{json::term_from_json, Term};
/// let v = serde_json::json!({"$pid": {"node": "n1", "incarnation": 1, "id": 7}});
/// assert_eq!(term_from_json(&v).unwrap().to_string(), "<n1.1.7>");
/// ```
pub fn term_from_json(v: &Value) -> Result<Term, JsonError> {
    from_value(v, 0)
}

fn enter(depth: u32) -> Result<u32, JsonError> {
    let limit = Limits::DEFAULT.max_depth;
    if depth >= limit {
        return Err(JsonError::TooDeep { limit });
    }
    Ok(depth + 1)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(tag: &'static str, reason: impl Into<String>) -> JsonError {
    JsonError::InvalidTag {
        tag,
        reason: reason.into(),
    }
}

fn from_value(v: &Value, depth: u32) -> Result<Term, JsonError> {
    Ok(match v {
        Value::Null => Term::Nil,
        Value::Bool(b) => Term::Bool(*b),
        Value::Number(n) => number(n)?,
        Value::String(s) => Term::String(s.clone()),
        Value::Array(items) => Term::List(seq(items, enter(depth)?)?),
        Value::Object(obj) => match single_tag(obj) {
            Some((tag, inner)) => tagged(tag, inner, depth)?,
            None => {
                let depth = enter(depth)?;
                let pairs = obj
                    .iter()
                    .map(|(k, v)| Ok((Term::String(k.clone()), from_value(v, depth)?)));
                Term::Map(pairs.collect::<Result<_, JsonError>>()?)
            }
        },
    })
}

fn single_tag(obj: &Map<String, Value>) -> Option<(&str, &Value)> {
    let mut iter = obj.iter();
    match (iter.next(), iter.next()) {
        (Some((k, v)), None) if k.starts_with('$') => Some((k, v)),
        _ => None,
    }
}

fn seq(items: &[Value], depth: u32) -> Result<Vec<Term>, JsonError> {
    items.iter().map(|v| from_value(v, depth)).collect()
}

fn number(n: &Number) -> Result<Term, JsonError> {
    if let Some(i) = n.as_i64() {
        return Ok(Term::Int(i));
    }
    match n.as_f64() {
        Some(f) if !n.is_u64() => Ok(Term::Float(f)),
        _ => Err(JsonError::IntegerOutOfRange {
            literal: n.to_string(),
        }),
    }
}

fn expected(tag: &'static str, what: &str, found: &Value) -> JsonError {
    invalid(tag, format!("expected {what}, found {}", kind(found)))
}

fn tagged(tag: &str, v: &Value, depth: u32) -> Result<Term, JsonError> {
    Ok(match (tag, v) {
        ("$atom", Value::String(s)) => Term::Atom(s.clone()),
        ("$atom", _) => return Err(expected("$atom", "a string", v)),
        ("$bytes", Value::String(s)) => {
            let bytes = BASE64
                .decode(s)
                .map_err(|e| JsonError::InvalidBase64(e.to_string()))?;
            Term::Bytes(bytes)
        }
        ("$bytes", _) => return Err(expected("$bytes", "a base64 string", v)),
        ("$tuple", Value::Array(items)) => Term::Tuple(seq(items, enter(depth)?)?),
        ("$tuple", _) => return Err(expected("$tuple", "an array", v)),
        ("$map", _) => map_pairs(v, enter(depth)?)?,
        ("$struct", _) => structure(v, enter(depth)?)?,
        ("$pid", _) => {
            let (node, incarnation, id) = id_fields("$pid", v)?;
            Term::Pid(Pid {
                node,
                incarnation,
                id,
            })
        }
        ("$ref", _) => {
            let (node, incarnation, id) = id_fields("$ref", v)?;
            Term::Ref(Ref {
                node,
                incarnation,
                id,
            })
        }
        ("$float", Value::Number(n)) => Term::Float(n.as_f64().unwrap_or(f64::NAN)),
        ("$float", Value::String(s)) => Term::Float(s.trim().parse().map_err(|_| {
            let want = "\"NaN\", \"inf\", \"-inf\" or a number";
            invalid("$float", format!("expected {want}, found {s:?}"))
        })?),
        ("$float", _) => return Err(expected("$float", "a string or a number", v)),
        _ => {
            return Err(JsonError::UnknownTag {
                tag: tag.to_owned(),
            });
        }
    })
}

/// `[[k, v], ...]`, as used by `$map` (and by `$struct` fields with repeated names).
fn pairs<'a>(tag: &'static str, v: &'a Value) -> Result<Vec<(&'a Value, &'a Value)>, JsonError> {
    let Value::Array(items) = v else {
        return Err(invalid(
            tag,
            format!("expected an array of [key, value] pairs, found {}", kind(v)),
        ));
    };
    items
        .iter()
        .map(|item| match item.as_array().map(Vec::as_slice) {
            Some([k, v]) => Ok((k, v)),
            Some(other) => Err(invalid(
                tag,
                format!(
                    "expected a [key, value] pair, found an array of {}",
                    other.len()
                ),
            )),
            None => Err(expected(tag, "a [key, value] pair", item)),
        })
        .collect()
}

fn map_pairs(v: &Value, depth: u32) -> Result<Term, JsonError> {
    let pairs = pairs("$map", v)?;
    let terms = pairs
        .into_iter()
        .map(|(k, v)| Ok((from_value(k, depth)?, from_value(v, depth)?)));
    Ok(Term::Map(terms.collect::<Result<_, JsonError>>()?))
}

fn structure(v: &Value, depth: u32) -> Result<Term, JsonError> {
    let Value::Object(obj) = v else {
        return Err(invalid(
            "$struct",
            format!(
                "expected {{\"name\": ..., \"fields\": ...}}, found {}",
                kind(v)
            ),
        ));
    };
    if let Some(key) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "fields"))
    {
        return Err(invalid(
            "$struct",
            format!("unexpected key {key:?} (expected \"name\" and \"fields\")"),
        ));
    }
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(invalid(
                "$struct",
                format!("\"name\" must be a string, found {}", kind(other)),
            ));
        }
        None => return Err(invalid("$struct", "missing \"name\"")),
    };
    let fields = match obj.get("fields") {
        None => Vec::new(),
        Some(Value::Object(fields)) => fields
            .iter()
            .map(|(k, v)| Ok((k.clone(), from_value(v, depth)?)))
            .collect::<Result<_, JsonError>>()?,
        Some(v @ Value::Array(_)) => pairs("$struct", v)?
            .into_iter()
            .map(|(k, v)| match k {
                Value::String(k) => Ok((k.clone(), from_value(v, depth)?)),
                other => Err(invalid(
                    "$struct",
                    format!("a field name must be a string, found {}", kind(other)),
                )),
            })
            .collect::<Result<_, JsonError>>()?,
        Some(other) => {
            return Err(invalid(
                "$struct",
                format!(
                    "\"fields\" must be an object or an array of [name, value] pairs, found {}",
                    kind(other)
                ),
            ));
        }
    };
    Ok(Term::Struct { name, fields })
}

fn id_fields(tag: &'static str, v: &Value) -> Result<(String, u64, u64), JsonError> {
    let shape = "{\"node\": string, \"incarnation\": integer, \"id\": integer}";
    let Value::Object(obj) = v else {
        return Err(invalid(tag, format!("expected {shape}, found {}", kind(v))));
    };
    if let Some(key) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "node" | "incarnation" | "id"))
    {
        return Err(invalid(
            tag,
            format!("unexpected key {key:?} (expected {shape})"),
        ));
    }
    let node = match obj.get("node") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(invalid(
                tag,
                format!("\"node\" must be a string (expected {shape})"),
            ));
        }
    };
    let uint = |key: &str| {
        obj.get(key).and_then(Value::as_u64).ok_or_else(|| {
            invalid(
                tag,
                format!("{key:?} must be an integer from 0 to 2^64-1 (expected {shape})"),
            )
        })
    };
    Ok((node, uint("incarnation")?, uint("id")?))
}

/// Converts a Term into JSON, by the mapping of `docs/json-mapping.md`.
///
/// # Examples
///
/// ```
/// use steinadler_core::{json::term_to_json, Term};
/// let t = Term::tuple([Term::atom("ok"), Term::bytes([1, 2, 3])]);
/// assert_eq!(term_to_json(&t).to_string(), r#"{"$tuple":[{"$atom":"ok"},{"$bytes":"AQID"}]}"#);
/// ```
pub fn term_to_json(t: &Term) -> Value {
    match t {
        Term::Nil => Value::Null,
        Term::Bool(b) => Value::Bool(*b),
        Term::Int(i) => Value::from(*i),
        Term::Float(f) => match Number::from_f64(*f) {
            Some(n) => Value::Number(n),
            None if f.is_nan() => tag("$float", "NaN".into()),
            None if *f > 0.0 => tag("$float", "inf".into()),
            None => tag("$float", "-inf".into()),
        },
        Term::String(s) => Value::String(s.clone()),
        Term::Bytes(b) => tag("$bytes", BASE64.encode(b).into()),
        Term::Atom(a) => tag("$atom", a.clone().into()),
        Term::List(items) => Value::Array(items.iter().map(term_to_json).collect()),
        Term::Tuple(items) => tag(
            "$tuple",
            Value::Array(items.iter().map(term_to_json).collect()),
        ),
        Term::Map(pairs) => match plain_object(pairs) {
            Some(obj) => Value::Object(obj),
            None => tag(
                "$map",
                pairs
                    .iter()
                    .map(|(k, v)| Value::Array(vec![term_to_json(k), term_to_json(v)]))
                    .collect(),
            ),
        },
        Term::Struct { name, fields } => {
            let obj: Map<String, Value> = fields
                .iter()
                .map(|(k, v)| (k.clone(), term_to_json(v)))
                .collect();
            let fields = if obj.len() == fields.len() {
                Value::Object(obj)
            } else {
                // Repeated field names: an object would drop some, so use pairs.
                fields
                    .iter()
                    .map(|(k, v)| Value::Array(vec![k.clone().into(), term_to_json(v)]))
                    .collect()
            };
            let mut body = Map::new();
            body.insert("name".into(), name.clone().into());
            body.insert("fields".into(), fields);
            tag("$struct", Value::Object(body))
        }
        Term::Pid(Pid {
            node,
            incarnation,
            id,
        }) => tag("$pid", id_json(node, *incarnation, *id)),
        Term::Ref(Ref {
            node,
            incarnation,
            id,
        }) => tag("$ref", id_json(node, *incarnation, *id)),
    }
}

/// The map as a plain JSON object, if that reads back as the same Term: every key a string,
/// no key repeated, and not a lone `$` key (which would read back as a tag).
fn plain_object(pairs: &[(Term, Term)]) -> Option<Map<String, Value>> {
    if let [(Term::String(k), _)] = pairs
        && k.starts_with('$')
    {
        return None;
    }
    let mut obj = Map::with_capacity(pairs.len());
    for (k, v) in pairs {
        let Term::String(k) = k else { return None };
        obj.insert(k.clone(), term_to_json(v));
    }
    (obj.len() == pairs.len()).then_some(obj)
}

fn id_json(node: &str, incarnation: u64, id: u64) -> Value {
    let mut obj = Map::new();
    obj.insert("node".into(), node.into());
    obj.insert("incarnation".into(), incarnation.into());
    obj.insert("id".into(), id.into());
    Value::Object(obj)
}

fn tag(tag: &str, v: Value) -> Value {
    let mut obj = Map::new();
    obj.insert(tag.to_owned(), v);
    Value::Object(obj)
}
