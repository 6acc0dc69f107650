//! OData query options the emulator understands: `$select`, `$top`/`$skip`,
//! `$filter=singleValueExtendedProperties/Any(ep: ep/id eq '…' and ep/value eq '…')`,
//! `$expand=singleValueExtendedProperties($filter=id eq '…')` and
//! `Prefer: odata.maxpagesize=N`; plus the URL decoding and encoding they need.

use axum::http::HeaderMap;

/// Decodes `%XX` escapes (and nothing else: `+` stays a plus in paths).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a query string into decoded pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default()
}

/// Encodes pairs as a query string, leaving the `$` of OData options as Graph writes them
/// (`?$skiptoken=…`).
pub fn encode_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| {
            let (dollar, bare) = match key.strip_prefix('$') {
                Some(bare) => ("$", bare),
                None => ("", key.as_str()),
            };
            format!(
                "{dollar}{}",
                serde_urlencoded::to_string([(bare, value)]).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The query parameter `name` (`$`-options also match without the `$`, as Graph allows).
pub fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let bare = name.trim_start_matches('$');
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name) || k.eq_ignore_ascii_case(bare))
        .map(|(_, v)| v.as_str())
}

/// `$select=a,b` → `["a", "b"]`.
pub fn select(query: &[(String, String)]) -> Option<Vec<String>> {
    param(query, "$select").map(|s| {
        s.split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()
    })
}

/// `Prefer: outlook.body-content-type="text"`: item bodies as text. Without it Graph returns
/// event bodies as HTML ("Get event", Microsoft Graph documentation).
pub fn prefers_text_bodies(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|pref| pref.trim().split_once('='))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("outlook.body-content-type")
                && value.trim().trim_matches('"').eq_ignore_ascii_case("text")
        })
}

/// `Prefer: odata.maxpagesize=N`.
pub fn max_page_size(headers: &HeaderMap) -> Option<usize> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|pref| {
            let (name, value) = pref.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("odata.maxpagesize")
                .then(|| value.trim().trim_matches('"').parse().ok())?
        })
}

/// A lexical token of the small filter grammar.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Colon,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            ':' => {
                chars.next();
                tokens.push(Token::Colon);
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        Some('\'') => break,
                        Some(other) => value.push(other),
                        None => return Err("unterminated string literal".into()),
                    }
                }
                tokens.push(Token::Text(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, ' ' | '\t' | '(' | ')' | ':' | '\'') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// Reads `PREFIX/id eq 'X' and PREFIX/value eq 'Y'` (either order; `prefix` empty for the
/// `$expand` form `id eq 'X'`): returns the id and, when given, the value.
fn id_value_conditions(tokens: &[Token], prefix: &str) -> Result<(String, Option<String>), String> {
    let mut id = None;
    let mut value = None;
    let mut rest = tokens;
    loop {
        let [
            Token::Word(field),
            Token::Word(op),
            Token::Text(literal),
            tail @ ..,
        ] = rest
        else {
            return Err("expected `id eq '...'` conditions".into());
        };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(format!("unsupported operator '{op}'"));
        }
        let field = field.strip_prefix(prefix).unwrap_or(field);
        match field.to_ascii_lowercase().as_str() {
            "id" => id = Some(literal.clone()),
            "value" => value = Some(literal.clone()),
            other => return Err(format!("unsupported property '{other}'")),
        }
        match tail {
            [] => break,
            [Token::Word(and), more @ ..] if and.eq_ignore_ascii_case("and") => rest = more,
            _ => return Err("expected `and` between conditions".into()),
        }
    }
    let id = id.ok_or("the condition needs an id")?;
    Ok((super::store::canonical_extended_id(&id), value))
}

/// `singleValueExtendedProperties/Any(ep: ep/id eq 'ID' and ep/value eq 'VALUE')` → (ID, VALUE).
pub fn extended_property_filter(filter: &str) -> Result<(String, String), String> {
    let tokens = tokenize(filter)?;
    let [
        Token::Word(head),
        Token::Open,
        Token::Word(var),
        Token::Colon,
        body @ ..,
        Token::Close,
    ] = tokens.as_slice()
    else {
        return Err("only singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...') is supported".into());
    };
    if !head.eq_ignore_ascii_case("singleValueExtendedProperties/any") {
        return Err(format!("unsupported filter on '{head}'"));
    }
    let (id, value) = id_value_conditions(body, &format!("{var}/"))?;
    let value = value.ok_or("the filter needs `ep/value eq '...'`")?;
    Ok((id, value))
}

/// `singleValueExtendedProperties($filter=id eq 'ID')` → `[ID]`; without a filter → `[]`
/// (all of them).
pub fn extended_property_expand(expand: &str) -> Result<Vec<String>, String> {
    let expand = expand.trim();
    let (name, rest) = match expand.find('(') {
        Some(at) => (&expand[..at], Some(&expand[at..])),
        None => (expand, None),
    };
    if !name
        .trim()
        .eq_ignore_ascii_case("singleValueExtendedProperties")
    {
        return Err(format!("unsupported $expand '{name}'"));
    }
    let Some(rest) = rest else {
        return Ok(Vec::new());
    };
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or("unbalanced parentheses in $expand")?;
    let (option, filter) = inner.split_once('=').ok_or("expected ($filter=...)")?;
    if !option
        .trim()
        .trim_start_matches('$')
        .eq_ignore_ascii_case("filter")
    {
        return Err(format!("unsupported option '{option}' in $expand"));
    }
    let tokens = tokenize(filter)?;
    let mut ids = Vec::new();
    for part in tokens.split(|t| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case("or"))) {
        ids.push(id_value_conditions(part, "")?.0);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ID: &str = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name TandemSyncId";

    #[test]
    fn reads_the_documented_filter_forms() {
        let filter = format!(
            "singleValueExtendedProperties/Any(ep: ep/id eq '{ID}' and ep/value eq 'it''s')"
        );
        assert_eq!(
            extended_property_filter(&filter).unwrap(),
            (ID.to_owned(), "it's".to_owned())
        );
        let reversed =
            format!("singleValueExtendedProperties/any(x:x/value eq 'v' and x/id eq '{ID}')");
        assert_eq!(
            extended_property_filter(&reversed).unwrap(),
            (ID.to_owned(), "v".to_owned())
        );
        assert!(extended_property_filter("displayName eq 'x'").is_err());
        assert!(
            extended_property_filter(&format!(
                "singleValueExtendedProperties/Any(ep: ep/id eq '{ID}')"
            ))
            .is_err()
        );
        assert_eq!(
            extended_property_expand(&format!(
                "singleValueExtendedProperties($filter=id eq '{ID}')"
            ))
            .unwrap(),
            vec![ID.to_owned()]
        );
        assert!(extended_property_expand("attachments").is_err());
    }

    #[test]
    fn decodes_percent_escapes_and_prefer() {
        assert_eq!(percent_decode("alice%40example.com"), "alice@example.com");
        assert_eq!(percent_decode("100%"), "100%");
        let mut headers = HeaderMap::new();
        headers.insert(
            "prefer",
            "outlook.timezone=\"UTC\", odata.maxpagesize=7"
                .parse()
                .unwrap(),
        );
        assert_eq!(max_page_size(&headers), Some(7));
        let pairs = vec![
            ("$skiptoken".to_owned(), "a+b/c".to_owned()),
            ("startDateTime".to_owned(), "x y".to_owned()),
        ];
        let encoded = encode_query(&pairs);
        assert!(encoded.starts_with("$skiptoken=a%2Bb%2Fc&"), "{encoded}");
        assert_eq!(parse_query(&encoded), pairs);
    }
}
