//! The [`Term`] value model and its process identifiers, [`Pid`] and [`Ref`].
//!
//! This module owns the shape of a Term, its constructors and conversions, and its
//! human-readable rendering ([`Display`](fmt::Display)), which error messages use. The wire
//! form lives in [`crate::codec`], the serde bridge in `serde_impl.rs` and the JSON form in
//! [`crate::json`].

use std::fmt;

/// A dynamic value: what guest functions take and return, and what travels between nodes.
///
/// Its wire form is MessagePack, specified in `docs/wire-format.md`; see [`Term::encode`] and
/// [`Term::decode`].
///
/// Equality is structural, so `Term::Float(f64::NAN) != Term::Float(f64::NAN)`, as for `f64`.
///
/// # Display
///
/// A Term prints in a compact, Erlang-flavoured notation, meant for logs and error messages
/// (it is not parsed back; use the JSON mapping for that):
///
/// | Term | printed as |
/// | --- | --- |
/// | `Nil`, `Bool` | `nil`, `true`, `false` |
/// | `Int`, `Float` | `42`, `1.0`, `-2.5e-8`, `NaN`, `inf`, `-inf` |
/// | `String` | `"hi\n"` (Rust string escapes) |
/// | `Bytes` | `<<1,2,255>>` |
/// | `Atom` | `ok`, or `'Hello world'` when not a plain lowercase identifier (and `'nil'`, `'true'`, `'false'`) |
/// | `List` | `[1, 2]` |
/// | `Tuple` | `{ok, "x"}` |
/// | `Map` | `#{"a" => 1, ok => 2}` |
/// | `Struct` | `#Point{x: 1, y: 2}` |
/// | `Pid` | `<n1.3.7>` (node, incarnation, id) |
/// | `Ref` | `#Ref<n1.3.9>` |
///
/// # Examples
///
/// ```
/// use steinadler_core::Term;
/// let t = Term::tuple([Term::atom("ok"), Term::from("x"), Term::Bytes(vec![1, 2])]);
/// assert_eq!(t.to_string(), r#"{ok, "x", <<1,2>>}"#);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// The absence of a value (MessagePack `nil`).
    Nil,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A symbolic constant, such as `ok` or `error`.
    Atom(String),
    /// A variable-length sequence.
    List(Vec<Term>),
    /// A fixed-size group, such as `{ok, Value}`.
    Tuple(Vec<Term>),
    /// A map with any Terms as keys; insertion order is kept and duplicate keys are not merged.
    Map(Vec<(Term, Term)>),
    /// A named record with named fields, in order.
    Struct {
        /// The struct's name, such as `Point`.
        name: String,
        /// The fields, in order.
        fields: Vec<(String, Term)>,
    },
    /// A process identifier.
    Pid(Pid),
    /// A unique reference.
    Ref(Ref),
}

/// A process identifier: which node, which incarnation of that node, and which process on it.
///
/// Prints as `<node.incarnation.id>`.
///
/// # Examples
///
/// ```
/// use steinadler_core::Pid;
/// let pid = Pid { node: "n1".into(), incarnation: 3, id: 7 };
/// assert_eq!(pid.to_string(), "<n1.3.7>");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pid {
    /// The name of the node that owns the process.
    pub node: String,
    /// Which start of that node; a restarted node gets a new incarnation.
    pub incarnation: u64,
    /// The process's number on that node incarnation.
    pub id: u64,
}

/// A unique reference, made by a node and never reused by that node incarnation.
///
/// Prints as `#Ref<node.incarnation.id>`.
///
/// # Examples
///
/// ```
/// use steinadler_core::Ref;
/// let r = Ref { node: "n1".into(), incarnation: 3, id: 9 };
/// assert_eq!(r.to_string(), "#Ref<n1.3.9>");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ref {
    /// The name of the node that made the reference.
    pub node: String,
    /// Which start of that node.
    pub incarnation: u64,
    /// The reference's number on that node incarnation.
    pub id: u64,
}

impl Term {
    /// An atom.
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::Term;
    /// assert_eq!(Term::atom("ok"), Term::Atom("ok".to_owned()));
    /// ```
    pub fn atom(name: impl Into<String>) -> Self {
        Self::Atom(name.into())
    }

    /// A tuple of the given elements.
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::Term;
    /// let t = Term::tuple([Term::atom("ok"), Term::from(1)]);
    /// assert_eq!(t.to_string(), "{ok, 1}");
    /// ```
    pub fn tuple(items: impl IntoIterator<Item = Term>) -> Self {
        Self::Tuple(items.into_iter().collect())
    }

    /// A list of the given elements.
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::Term;
    /// assert_eq!(Term::list([1.into(), 2.into()]).to_string(), "[1, 2]");
    /// ```
    pub fn list(items: impl IntoIterator<Item = Term>) -> Self {
        Self::List(items.into_iter().collect())
    }

    /// A byte string.
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::Term;
    /// assert_eq!(Term::bytes(b"ab").to_string(), "<<97,98>>");
    /// ```
    pub fn bytes(bytes: impl AsRef<[u8]>) -> Self {
        Self::Bytes(bytes.as_ref().to_vec())
    }

    /// A map of the given pairs, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::Term;
    /// let m = Term::map([(Term::from("a"), Term::from(1))]);
    /// assert_eq!(m.to_string(), r#"#{"a" => 1}"#);
    /// ```
    pub fn map(pairs: impl IntoIterator<Item = (Term, Term)>) -> Self {
        Self::Map(pairs.into_iter().collect())
    }

    /// A struct with the given name and fields, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::Term;
    /// let p = Term::new_struct("Point", [("x", Term::from(1)), ("y", Term::from(2))]);
    /// assert_eq!(p.to_string(), "#Point{x: 1, y: 2}");
    /// ```
    pub fn new_struct<K: Into<String>>(
        name: impl Into<String>,
        fields: impl IntoIterator<Item = (K, Term)>,
    ) -> Self {
        Self::Struct {
            name: name.into(),
            fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }

    /// The name of this Term's kind, for messages such as "expected int, found atom".
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::Term;
    /// assert_eq!(Term::atom("ok").kind(), "atom");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Nil => "nil",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::String(_) => "string",
            Self::Bytes(_) => "bytes",
            Self::Atom(_) => "atom",
            Self::List(_) => "list",
            Self::Tuple(_) => "tuple",
            Self::Map(_) => "map",
            Self::Struct { .. } => "struct",
            Self::Pid(_) => "pid",
            Self::Ref(_) => "ref",
        }
    }

    /// The integer, if this is an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The string, if this is a `String`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The atom's name, if this is an `Atom`.
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Self::Atom(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is the atom `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::Term;
    /// assert!(Term::atom("ok").is_atom("ok"));
    /// assert!(!Term::from("ok").is_atom("ok"));
    /// ```
    pub fn is_atom(&self, name: &str) -> bool {
        self.as_atom() == Some(name)
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Term {
            fn from(v: $t) -> Self {
                Self::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<bool> for Term {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<f64> for Term {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<f32> for Term {
    fn from(v: f32) -> Self {
        Self::Float(f64::from(v))
    }
}

impl From<&str> for Term {
    fn from(v: &str) -> Self {
        Self::String(v.to_owned())
    }
}

impl From<String> for Term {
    fn from(v: String) -> Self {
        Self::String(v)
    }
}

impl From<Vec<Term>> for Term {
    /// A list.
    fn from(v: Vec<Term>) -> Self {
        Self::List(v)
    }
}

impl From<Pid> for Term {
    fn from(v: Pid) -> Self {
        Self::Pid(v)
    }
}

impl From<Ref> for Term {
    fn from(v: Ref) -> Self {
        Self::Ref(v)
    }
}

impl From<()> for Term {
    /// `Nil`.
    fn from((): ()) -> Self {
        Self::Nil
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}.{}.{}>", self.node, self.incarnation, self.id)
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#Ref<{}.{}.{}>", self.node, self.incarnation, self.id)
    }
}

/// Whether `name` prints as a bare atom: a lowercase ASCII letter, then ASCII letters,
/// digits, `_` or `@`, and not one of the words that print other Terms.
fn is_bare_atom(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@')
        && !matches!(name, "nil" | "true" | "false")
}

fn write_atom(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if is_bare_atom(name) {
        return f.write_str(name);
    }
    f.write_str("'")?;
    for c in name.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            c if c.is_control() => write!(f, "{}", c.escape_default())?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

fn write_seq(f: &mut fmt::Formatter<'_>, items: &[Term]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nil => f.write_str("nil"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x:?}"),
            Self::String(s) => write!(f, "{s:?}"),
            Self::Bytes(bytes) => {
                f.write_str("<<")?;
                for (i, b) in bytes.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{b}")?;
                }
                f.write_str(">>")
            }
            Self::Atom(name) => write_atom(f, name),
            Self::List(items) => {
                f.write_str("[")?;
                write_seq(f, items)?;
                f.write_str("]")
            }
            Self::Tuple(items) => {
                f.write_str("{")?;
                write_seq(f, items)?;
                f.write_str("}")
            }
            Self::Map(pairs) => {
                f.write_str("#{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} => {v}")?;
                }
                f.write_str("}")
            }
            Self::Struct { name, fields } => {
                write!(f, "#{name}{{")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            Self::Pid(pid) => write!(f, "{pid}"),
            Self::Ref(r) => write!(f, "{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_covers_every_variant() {
        let pid = Pid {
            node: "n1".into(),
            incarnation: 3,
            id: 7,
        };
        let r = Ref {
            node: "n1".into(),
            incarnation: 3,
            id: 9,
        };
        let t = Term::list([
            Term::Nil,
            true.into(),
            (-4).into(),
            1.0.into(),
            f64::NAN.into(),
            f64::NEG_INFINITY.into(),
            "a\"b".into(),
            Term::bytes([]),
            Term::atom("ok"),
            Term::atom("Hello 'w'"),
            Term::atom("true"),
            Term::atom(""),
            Term::tuple([]),
            Term::map([(Term::atom("k"), Term::from(1))]),
            Term::new_struct("P", [("x", Term::Nil)]),
            pid.into(),
            r.into(),
        ]);
        assert_eq!(
            t.to_string(),
            r#"[nil, true, -4, 1.0, NaN, -inf, "a\"b", <<>>, ok, 'Hello \'w\'', 'true', '', {}, #{k => 1}, #P{x: nil}, <n1.3.7>, #Ref<n1.3.9>]"#
        );
    }

    #[test]
    fn kinds_are_lowercase_names() {
        assert_eq!(Term::Nil.kind(), "nil");
        assert_eq!(Term::new_struct::<&str>("P", []).kind(), "struct");
        assert_eq!(Term::from(3u8).as_int(), Some(3));
        assert_eq!(Term::from("s").as_str(), Some("s"));
    }
}
