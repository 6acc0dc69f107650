//! The Siebel `searchspec` query language, as the REST emulator filters records with it:
//! a tokenizer, a recursive-descent parser into an expression tree, and an evaluator.
//!
//! Grammar (keywords are case-insensitive):
//!
//! ```text
//! expr       := and_expr ( OR and_expr )*
//! and_expr   := not_expr ( AND not_expr )*
//! not_expr   := NOT not_expr | primary
//! primary    := '(' expr ')' | EXISTS '(' expr ')' | comparison
//! comparison := operand ( cmp_op operand
//!                       | [NOT] LIKE operand
//!                       | IS [NOT] NULL )
//! cmp_op     := '=' | '~=' | '<>' | '!=' | '<' | '>' | '<=' | '>='
//! operand    := '[' field name ']' | 'text' | "text" | number
//! ```
//!
//! Quotes inside a literal are written twice (`'O''Brien'`), as in Siebel query language.
//! Evaluation rules: an absent field and an empty field are both NULL (Siebel stores no empty
//! strings) and compare as `""`; when both sides parse as `MM/DD/YYYY HH:MM:SS` (or
//! `MM/DD/YYYY`) they compare as dates, when both parse as numbers as numbers, otherwise as
//! case-sensitive text; `~=` is equality whatever the case. `LIKE` takes `*` for any run of characters and `?` for one.
//! `EXISTS (…)` queries a multi-value field (kept here as comma-separated Ids, such as an
//! Action's `Employee Id`): it holds when the inner expression holds for one of the values of
//! the first field it names, as Siebel's `EXISTS ([Employee Id] = '1-ABC')` does.

use std::cmp::Ordering;
use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};

/// Deeper nesting than this is refused, so a hostile spec cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Why a searchspec could not be parsed; `position` is the 0-based character offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid searchspec at character {position}: {message}")]
pub struct SearchSpecError {
    pub position: usize,
    pub message: String,
}

fn error<T>(position: usize, message: impl Into<String>) -> Result<T, SearchSpecError> {
    Err(SearchSpecError { position, message: message.into() })
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    /// `~=`: equal whatever the case.
    EqIgnoringCase,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Field(String),
    Literal(String),
}

/// A parsed searchspec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(Operand, CmpOp, Operand),
    Like { operand: Operand, pattern: Operand, negated: bool },
    IsNull { operand: Operand, negated: bool },
    /// `EXISTS (inner)`: `inner` holds for one value of a multi-value field.
    Exists(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Field(String),
    Literal(String),
    Word(String),
    Op(CmpOp),
    LParen,
    RParen,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Field(name) => write!(f, "[{name}]"),
            Token::Literal(text) => write!(f, "'{text}'"),
            Token::Word(word) => write!(f, "{word}"),
            Token::Op(op) => write!(f, "{}", op_text(*op)),
            Token::LParen => write!(f, "("),
            Token::RParen => write!(f, ")"),
        }
    }
}

fn op_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::EqIgnoringCase => "~=",
        CmpOp::Ne => "<>",
        CmpOp::Lt => "<",
        CmpOp::Gt => ">",
        CmpOp::Le => "<=",
        CmpOp::Ge => ">=",
    }
}

/// Splits a searchspec into tokens, each with its character position.
fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, SearchSpecError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push((start, Token::LParen));
                i += 1;
            }
            ')' => {
                tokens.push((start, Token::RParen));
                i += 1;
            }
            '[' => {
                let Some(len) = chars[i + 1..].iter().position(|&c| c == ']') else {
                    return error(start, "field name opened with '[' is never closed with ']'");
                };
                let name: String = chars[i + 1..i + 1 + len].iter().collect();
                let name = name.trim().to_owned();
                if name.is_empty() {
                    return error(start, "empty field name '[]'");
                }
                tokens.push((start, Token::Field(name)));
                i += len + 2;
            }
            '\'' | '"' => {
                let quote = c;
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return error(start, format!("text literal opened with {quote} is never closed")),
                        Some(&q) if q == quote => {
                            if chars.get(i + 1) == Some(&quote) {
                                text.push(quote);
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(&other) => {
                            text.push(other);
                            i += 1;
                        }
                    }
                }
                tokens.push((start, Token::Literal(text)));
            }
            '=' => {
                tokens.push((start, Token::Op(CmpOp::Eq)));
                i += 1;
            }
            '~' if chars.get(i + 1) == Some(&'=') => {
                tokens.push((start, Token::Op(CmpOp::EqIgnoringCase)));
                i += 2;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                tokens.push((start, Token::Op(CmpOp::Ne)));
                i += 2;
            }
            '<' => {
                let (op, len) = match chars.get(i + 1) {
                    Some('>') => (CmpOp::Ne, 2),
                    Some('=') => (CmpOp::Le, 2),
                    _ => (CmpOp::Lt, 1),
                };
                tokens.push((start, Token::Op(op)));
                i += len;
            }
            '>' => {
                let (op, len) = if chars.get(i + 1) == Some(&'=') { (CmpOp::Ge, 2) } else { (CmpOp::Gt, 1) };
                tokens.push((start, Token::Op(op)));
                i += len;
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                while i < chars.len()
                    && (chars[i].is_ascii_digit() || chars[i] == '.' || (i == start && chars[i] == '-'))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                if text.parse::<f64>().is_err() {
                    return error(start, format!("'{text}' is not a number; quote text literals"));
                }
                tokens.push((start, Token::Literal(text)));
            }
            c if c.is_alphabetic() => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                tokens.push((start, Token::Word(word.to_ascii_uppercase())));
            }
            other => return error(start, format!("unexpected character '{other}'")),
        }
    }
    Ok(tokens)
}

/// Parses a searchspec into an expression tree.
pub fn parse(input: &str) -> Result<Expr, SearchSpecError> {
    let tokens = tokenize(input)?;
    let mut parser = Parser { tokens, pos: 0, end: input.chars().count(), depth: 0 };
    if parser.tokens.is_empty() {
        return error(0, "the searchspec is empty");
    }
    let expr = parser.or_expr()?;
    if let Some((position, token)) = parser.tokens.get(parser.pos) {
        return error(*position, format!("unexpected {token} after a complete expression (missing AND/OR?)"));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, token)| token)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(position, _)| *position)
    }

    fn next(&mut self) -> Option<(usize, Token)> {
        let token = self.tokens.get(self.pos).cloned();
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn descend(&mut self) -> Result<(), SearchSpecError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return error(self.position(), format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, SearchSpecError> {
        self.descend()?;
        let mut left = self.and_expr()?;
        while self.eat_word("OR") {
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, SearchSpecError> {
        let mut left = self.not_expr()?;
        while self.eat_word("AND") {
            let right = self.not_expr()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr, SearchSpecError> {
        if self.eat_word("NOT") {
            self.descend()?;
            let inner = self.not_expr()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, SearchSpecError> {
        if self.eat_word("EXISTS") {
            let position = self.position();
            if self.peek() != Some(&Token::LParen) {
                return error(position, "expected '(' after EXISTS");
            }
            self.descend()?;
            let inner = self.primary()?;
            self.depth -= 1;
            return Ok(Expr::Exists(Box::new(inner)));
        }
        if self.peek() == Some(&Token::LParen) {
            let open = self.position();
            self.pos += 1;
            let inner = self.or_expr()?;
            match self.next() {
                Some((_, Token::RParen)) => return Ok(inner),
                Some((position, token)) => {
                    return error(position, format!("expected ')' to close the '(' at {open}, found {token}"));
                }
                None => return error(self.end, format!("the '(' at {open} is never closed")),
            }
        }
        self.comparison()
    }

    fn operand(&mut self, what: &str) -> Result<Operand, SearchSpecError> {
        match self.next() {
            Some((_, Token::Field(name))) => Ok(Operand::Field(name)),
            Some((_, Token::Literal(text))) => Ok(Operand::Literal(text)),
            Some((position, token)) => error(position, format!("expected {what} ([Field] or 'text'), found {token}")),
            None => error(self.end, format!("expected {what} ([Field] or 'text'), found the end")),
        }
    }

    fn comparison(&mut self) -> Result<Expr, SearchSpecError> {
        let operand = self.operand("a field or value")?;
        let position = self.position();
        match self.next() {
            Some((_, Token::Op(op))) => {
                let right = self.operand("a value")?;
                Ok(Expr::Compare(operand, op, right))
            }
            Some((_, Token::Word(word))) if word == "LIKE" => {
                let pattern = self.operand("a LIKE pattern")?;
                Ok(Expr::Like { operand, pattern, negated: false })
            }
            Some((_, Token::Word(word))) if word == "NOT" => {
                if !self.eat_word("LIKE") {
                    return error(self.position(), "expected LIKE after NOT");
                }
                let pattern = self.operand("a LIKE pattern")?;
                Ok(Expr::Like { operand, pattern, negated: true })
            }
            Some((_, Token::Word(word))) if word == "IS" => {
                let negated = self.eat_word("NOT");
                if !self.eat_word("NULL") {
                    return error(self.position(), "expected NULL after IS / IS NOT");
                }
                Ok(Expr::IsNull { operand, negated })
            }
            Some((_, token)) => {
                error(position, format!("expected an operator (=, ~=, <>, <, >, <=, >=, LIKE, IS NULL), found {token}"))
            }
            None => error(self.end, "expected an operator (=, ~=, <>, <, >, <=, >=, LIKE, IS NULL), found the end"),
        }
    }
}

/// Parses `MM/DD/YYYY HH:MM:SS` or `MM/DD/YYYY` (midnight).
pub fn parse_siebel_datetime(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    // Most values are no dates: a byte check first keeps chrono's parser (slow next to a
    // scan of thousands of records) for the ones shaped like one.
    let bytes = text.as_bytes();
    if !(bytes.len() == 10 || bytes.len() == 19) || bytes[2] != b'/' || bytes[5] != b'/' {
        return None;
    }
    NaiveDateTime::parse_from_str(text, "%m/%d/%Y %H:%M:%S")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(text, "%m/%d/%Y").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
}

/// Orders two field values as searchspec comparisons do: as dates, else numbers, else text.
pub fn compare_values(left: &str, right: &str) -> Ordering {
    if let (Some(a), Some(b)) = (parse_siebel_datetime(left), parse_siebel_datetime(right)) {
        return a.cmp(&b);
    }
    if let (Ok(a), Ok(b)) = (left.trim().parse::<f64>(), right.trim().parse::<f64>())
        && let Some(ordering) = a.partial_cmp(&b)
    {
        return ordering;
    }
    left.cmp(right)
}

/// Whether `=` against this literal holds only for the very same text, so an index by exact
/// value finds every match: not empty (absent fields compare as `""`), not a date and not a
/// number (those compare by meaning: `'1'` = `'1.0'`, `'12/01/2026'` = `'12/01/2026 00:00:00'`).
/// Mirrors `compare_values`.
pub fn equals_only_itself(literal: &str) -> bool {
    !literal.is_empty() && parse_siebel_datetime(literal).is_none() && literal.trim().parse::<f64>().is_err()
}

/// `*` matches any run of characters, `?` exactly one; everything else matches itself.
fn like(text: &[char], pattern: &[char]) -> bool {
    // Iterative wildcard matching with backtracking to the last '*': linear-ish, no recursion.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            t += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

impl Expr {
    /// True when a record whose fields `lookup` returns matches this expression.
    pub fn matches<'a>(&self, lookup: &dyn Fn(&str) -> Option<&'a str>) -> bool {
        let value = |operand: &Operand| -> String {
            match operand {
                Operand::Field(name) => lookup(name).unwrap_or("").to_owned(),
                Operand::Literal(text) => text.clone(),
            }
        };
        match self {
            Expr::Or(a, b) => a.matches(lookup) || b.matches(lookup),
            Expr::And(a, b) => a.matches(lookup) && b.matches(lookup),
            Expr::Not(inner) => !inner.matches(lookup),
            Expr::Compare(left, CmpOp::EqIgnoringCase, right) => value(left).to_lowercase() == value(right).to_lowercase(),
            Expr::Compare(left, op, right) => {
                let ordering = compare_values(&value(left), &value(right));
                match op {
                    CmpOp::Eq => ordering == Ordering::Equal,
                    CmpOp::EqIgnoringCase => unreachable!("compared above"),
                    CmpOp::Ne => ordering != Ordering::Equal,
                    CmpOp::Lt => ordering == Ordering::Less,
                    CmpOp::Gt => ordering == Ordering::Greater,
                    CmpOp::Le => ordering != Ordering::Greater,
                    CmpOp::Ge => ordering != Ordering::Less,
                }
            }
            Expr::Like { operand, pattern, negated } => {
                let text: Vec<char> = value(operand).chars().collect();
                let pattern: Vec<char> = value(pattern).chars().collect();
                like(&text, &pattern) != *negated
            }
            Expr::IsNull { operand, negated } => value(operand).is_empty() != *negated,
            Expr::Exists(inner) => {
                let Some(field) = inner.first_field() else { return inner.matches(lookup) };
                let values = lookup(field).unwrap_or("");
                values.split(',').map(str::trim).filter(|one| !one.is_empty()).any(|one| {
                    inner.matches(&|name| if name == field { Some(one) } else { lookup(name) })
                })
            }
        }
    }

    /// Replaces each literal compared with a field by `convert(field, literal)` where that
    /// answers one (e.g. a date-time the user wrote in their time zone, as stored).
    pub fn convert_literals(&mut self, convert: &dyn Fn(&str, &str) -> Option<String>) {
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => {
                a.convert_literals(convert);
                b.convert_literals(convert);
            }
            Expr::Not(inner) | Expr::Exists(inner) => inner.convert_literals(convert),
            Expr::Compare(Operand::Field(field), _, Operand::Literal(literal))
            | Expr::Compare(Operand::Literal(literal), _, Operand::Field(field)) => {
                if let Some(converted) = convert(field, literal) {
                    *literal = converted;
                }
            }
            Expr::Compare(..) | Expr::Like { .. } | Expr::IsNull { .. } => {}
        }
    }

    /// Every field this expression names, left to right (repeats included).
    pub fn fields(&self) -> Vec<&str> {
        fn push<'e>(operand: &'e Operand, out: &mut Vec<&'e str>) {
            if let Operand::Field(name) = operand {
                out.push(name.as_str());
            }
        }
        fn walk<'e>(expr: &'e Expr, out: &mut Vec<&'e str>) {
            match expr {
                Expr::Or(a, b) | Expr::And(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Not(inner) | Expr::Exists(inner) => walk(inner, out),
                Expr::Compare(left, _, right) => {
                    push(left, out);
                    push(right, out);
                }
                Expr::Like { operand, pattern, .. } => {
                    push(operand, out);
                    push(pattern, out);
                }
                Expr::IsNull { operand, .. } => push(operand, out),
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// The first field this expression names, left to right.
    pub fn first_field(&self) -> Option<&str> {
        fn field(operand: &Operand) -> Option<&str> {
            match operand {
                Operand::Field(name) => Some(name.as_str()),
                Operand::Literal(_) => None,
            }
        }
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => a.first_field().or_else(|| b.first_field()),
            Expr::Not(inner) | Expr::Exists(inner) => inner.first_field(),
            Expr::Compare(left, _, right) => field(left).or_else(|| field(right)),
            Expr::Like { operand, pattern, .. } => field(operand).or_else(|| field(pattern)),
            Expr::IsNull { operand, .. } => field(operand),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn eval(spec: &str, rec: &BTreeMap<String, String>) -> bool {
        let expr = match parse(spec) {
            Ok(expr) => expr,
            Err(e) => panic!("{spec:?} should parse: {e}"),
        };
        expr.matches(&|name| rec.get(name).map(String::as_str))
    }

    fn john() -> BTreeMap<String, String> {
        record(&[
            ("First Name", "John"),
            ("Last Name", "O'Brien"),
            ("Updated", "11/25/2026 10:30:00"),
            ("Mod Id", "9"),
            ("Job Title", ""),
        ])
    }

    #[test]
    fn each_comparison_operator() {
        let r = john();
        let cases: &[(&str, bool)] = &[
            ("[First Name] = 'John'", true),
            ("[First Name] = 'john'", false), // case-sensitive
            ("[First Name] ~= 'jOHN'", true), // case-insensitive
            ("[First Name] ~= 'Jon'", false),
            ("[First Name] <> 'John'", false),
            ("[First Name] != 'Jane'", true),
            ("[First Name] < 'K'", true),
            ("[First Name] > 'K'", false),
            ("[First Name] <= 'John'", true),
            ("[First Name] >= 'John'", true),
            ("[First Name] >= 'Johnny'", false),
            ("[First Name] = \"John\"", true),
            ("'John' = [First Name]", true),
            ("[Last Name] = 'O''Brien'", true),
            ("[Last Name] = \"O'Brien\"", true),
            ("[Mod Id] > 10", false), // numeric, not text ("9" > "10" as text)
            ("[Mod Id] < '10'", true),
        ];
        for (spec, expected) in cases {
            assert_eq!(eval(spec, &r), *expected, "{spec}");
        }
    }

    #[test]
    fn like_wildcards() {
        let r = john();
        let cases: &[(&str, bool)] = &[
            ("[First Name] LIKE 'J*'", true),
            ("[First Name] LIKE 'j*'", false),
            ("[First Name] LIKE '*hn'", true),
            ("[First Name] LIKE 'J?hn'", true),
            ("[First Name] LIKE 'J?n'", false),
            ("[First Name] LIKE 'John'", true),
            ("[First Name] LIKE '*'", true),
            ("[First Name] like 'J**n'", true),
            ("[First Name] NOT LIKE 'J*'", false),
            ("[Last Name] LIKE 'O''*'", true),
        ];
        for (spec, expected) in cases {
            assert_eq!(eval(spec, &r), *expected, "{spec}");
        }
    }

    #[test]
    fn null_checks_treat_absent_and_empty_alike() {
        let r = john();
        assert!(eval("[Job Title] IS NULL", &r));
        assert!(eval("[No Such Field] IS NULL", &r));
        assert!(!eval("[First Name] IS NULL", &r));
        assert!(eval("[First Name] IS NOT NULL", &r));
        assert!(!eval("[Job Title] is not null", &r));
    }

    #[test]
    fn precedence_and_parentheses() {
        let r = john();
        // AND binds tighter than OR: true OR (false AND false) = true.
        assert!(eval("[First Name] = 'John' OR [First Name] = 'X' AND [Last Name] = 'Y'", &r));
        // Parentheses override: (true OR false) AND false = false.
        assert!(!eval("([First Name] = 'John' OR [First Name] = 'X') AND [Last Name] = 'Y'", &r));
        // NOT binds tighter than AND: (NOT false) AND true.
        assert!(eval("NOT [First Name] = 'X' AND [Last Name] = 'O''Brien'", &r));
        assert!(!eval("NOT ([First Name] = 'John' AND [Last Name] = 'O''Brien')", &r));
        assert!(eval("NOT NOT [First Name] = 'John'", &r));
        assert!(eval("(([First Name] LIKE 'J*' AND [Last Name] LIKE 'O*'))", &r));
        let tree = parse("[A] = '1' OR [B] = '2' AND [C] = '3'");
        assert!(matches!(tree, Ok(Expr::Or(_, right)) if matches!(*right, Expr::And(_, _))));
    }

    #[test]
    fn dates_compare_as_dates_not_text() {
        let r = john();
        // As text "11/25/2026 10:30:00" < "12/01/2025 ..." but as dates it is later.
        assert!(eval("[Updated] > '12/01/2025 00:00:00'", &r));
        assert!(eval("[Updated] > '11/25/2026 10:00:00'", &r));
        assert!(!eval("[Updated] > '11/25/2026 10:30:00'", &r));
        assert!(eval("[Updated] >= '11/25/2026 10:30:00'", &r));
        assert!(eval("[Updated] < '01/01/2027'", &r));
        assert!(eval("[Updated] = '11/25/2026 10:30:00'", &r));
    }

    #[test]
    fn malformed_specs_are_errors_with_positions() {
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("[First Name] = ", 15),
            ("[First Name 'x'", 0),
            ("[First Name] = 'John", 15),
            ("[First Name] 'John'", 13),
            ("([First Name] = 'John'", 22),
            ("[First Name] = 'John')", 21),
            ("[A] = 'x' AND", 13),
            ("[A] = 'x' [B] = 'y'", 10),
            ("[A] IS 'x'", 7),
            ("[A] NOT 'x'", 8),
            ("[A] = 'x' # ", 10),
            ("[] = 'x'", 0),
            ("[A] = 1.2.3", 6),
            ("= 'x'", 0),
        ];
        for (spec, position) in cases {
            match parse(spec) {
                Ok(expr) => panic!("{spec:?} should not parse, got {expr:?}"),
                Err(e) => assert_eq!(e.position, *position, "{spec:?}: {e}"),
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let spec = format!("{}[A] = 'x'{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&spec).is_err());
        let nots = format!("{}[A] = 'x'", "NOT ".repeat(10_000));
        assert!(parse(&nots).is_err());
        let ok = format!("{}[A] = 'x'{}", "(".repeat(20), ")".repeat(20));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn exists_holds_for_one_value_of_a_multi_value_field() {
        let meeting = record(&[("Employee Id", "1-A, 1-B"), ("Primary Owner Id", "1-O"), ("Display", "Calendar")]);
        assert!(eval("EXISTS ([Employee Id] = '1-B')", &meeting));
        assert!(!eval("EXISTS ([Employee Id] = '1-')", &meeting), "a whole value, not a part");
        assert!(!eval("[Employee Id] = '1-B'", &meeting), "without EXISTS the field is one text");
        assert!(eval("([Primary Owner Id] = '1-B' OR EXISTS ([Employee Id] = '1-B')) AND [Display] = 'Calendar'", &meeting));
        assert!(!eval("EXISTS ([Contact Id] = '1-B')", &meeting), "no values: nothing exists");
        assert!(eval("NOT EXISTS ([Contact Id] = '1-B')", &meeting));
        assert!(parse("EXISTS [Employee Id] = '1-B'").is_err(), "EXISTS takes a parenthesised expression");
    }
}
