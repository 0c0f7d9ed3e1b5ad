//! `ssl.principal.mapping.rules` (KIP-371): how a client certificate's distinguished name
//! becomes a user name. A list of `RULE:pattern/replacement/[LU]` and `DEFAULT`, tried in
//! order; the first rule whose pattern matches the whole name gives the user (`$1`… refer to
//! its groups; `L` / `U` change the case); `DEFAULT` keeps the name as it is. A name no rule
//! matches cannot authenticate, as in Kafka. Patterns may contain commas and `\/`.

use regex::Regex;

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Map {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// Parsed mapping rules.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

/// Reads up to an unescaped `/`: (the text with `\/` unescaped, the rest after the `/`).
fn until_slash(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if s[i + 1..].starts_with('/') => {
                out.push('/');
                chars.next();
            }
            '/' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

impl PrincipalMapper {
    pub fn parse(rules: &str) -> Result<PrincipalMapper, String> {
        let mut out = Vec::new();
        let mut rest = rules.trim();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("DEFAULT") {
                out.push(Rule::Default);
                rest = r;
            } else if let Some(r) = rest.strip_prefix("RULE:") {
                let (pattern, r) = until_slash(r)
                    .ok_or_else(|| format!("rule '{rest}' has no '/' after its pattern"))?;
                let (replacement, r) = until_slash(r)
                    .ok_or_else(|| format!("rule '{rest}' has no '/' after its replacement"))?;
                let (case, r) = match r.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &r[1..]),
                    _ => (None, r),
                };
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("rule pattern '{pattern}': {e}"))?;
                out.push(Rule::Map {
                    pattern,
                    replacement,
                    case,
                });
                rest = r;
            } else {
                return Err(format!(
                    "'{rest}': each rule is RULE:pattern/replacement/[LU] or DEFAULT"
                ));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(r) => rest = r.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("'{rest}': rules are separated by commas")),
            }
        }
        if out.is_empty() {
            return Err("ssl.principal.mapping.rules is empty".into());
        }
        Ok(PrincipalMapper { rules: out })
    }

    /// The user name for distinguished name `dn`, or None if no rule matches.
    pub fn map(&self, dn: &str) -> Option<String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Some(dn.to_string()),
                Rule::Map {
                    pattern,
                    replacement,
                    case,
                } => {
                    if !pattern.is_match(dn) {
                        continue;
                    }
                    let user = pattern.replace(dn, replacement.as_str()).into_owned();
                    return Some(match case {
                        Some('L') => user.to_lowercase(),
                        Some('U') => user.to_uppercase(),
                        _ => user,
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_documented_example() {
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT",
        )
        .unwrap();
        assert_eq!(
            m.map("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .as_deref(),
            Some("serviceuser")
        );
        assert_eq!(
            m.map("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .as_deref(),
            Some("adminuser@admin")
        );
        assert_eq!(m.map("CN=Ali.Ce,OU=x").as_deref(), Some("ali.ce"));
        assert_eq!(
            m.map("O=NoCommonName").as_deref(),
            Some("O=NoCommonName"),
            "DEFAULT last"
        );
    }

    #[test]
    fn no_matching_rule_means_no_user_and_bad_rules_are_refused() {
        let m = PrincipalMapper::parse("RULE:^CN=(.*?),OU=eng$/$1/U").unwrap();
        assert_eq!(m.map("CN=alice,OU=eng").as_deref(), Some("ALICE"));
        assert_eq!(m.map("CN=alice,OU=ops"), None);
        let m = PrincipalMapper::parse("RULE:^CN=([^\\/]*)\\/x$/$1/").unwrap();
        assert_eq!(m.map("CN=a/x").as_deref(), Some("a"), "escaped slash");
        for bad in [
            "",
            "RULE:abc",
            "RULE:a/b",
            "RULE:(/x/",
            "NOPE",
            "DEFAULT DEFAULT",
        ] {
            assert!(PrincipalMapper::parse(bad).is_err(), "{bad}");
        }
        assert!(PrincipalMapper::parse("DEFAULT").is_ok());
    }
}
