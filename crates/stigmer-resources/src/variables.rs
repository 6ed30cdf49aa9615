//! `${NAME}` references in an McpServer's stdio `env` and HTTP `headers`: checked when a
//! manifest is applied, resolved when the server starts (from the agent's `env`, the run's
//! `--env` and `--secret`). A `$` not followed by `{` is kept as it is.

/// Why a value's references cannot be read or resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    #[error("`${{` at byte {at} is not closed by `}}`")]
    Unclosed { at: usize },
    #[error(
        "{name:?} is not a valid variable name in `${{{name}}}`: use letters, digits and _, not starting with a digit"
    )]
    BadName { name: String },
    #[error(
        "the variable {name} is not set: declare it in the agent's spec.env or pass it with --env/--secret"
    )]
    Missing { name: String },
}

/// The names `text` references, in order (repeats included).
pub fn references(text: &str) -> Result<Vec<&str>, VariableError> {
    let mut names = Vec::new();
    walk(text, |piece| {
        if let Piece::Reference(name) = piece {
            names.push(name);
        }
        Ok(())
    })?;
    Ok(names)
}

/// `text` with every `${NAME}` replaced by `lookup(NAME)`; the first name without a value is
/// an error naming it (never its neighbours' values).
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, VariableError> {
    let mut out = String::with_capacity(text.len());
    walk(text, |piece| {
        match piece {
            Piece::Literal(literal) => out.push_str(literal),
            Piece::Reference(name) => match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(VariableError::Missing {
                        name: name.to_owned(),
                    });
                }
            },
        }
        Ok(())
    })?;
    Ok(out)
}

enum Piece<'a> {
    Literal(&'a str),
    Reference(&'a str),
}

fn walk<'a>(
    text: &'a str,
    mut visit: impl FnMut(Piece<'a>) -> Result<(), VariableError>,
) -> Result<(), VariableError> {
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find("${") {
        visit(Piece::Literal(&rest[..start]))?;
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(VariableError::Unclosed { at: offset + start });
        };
        let name = &after[..end];
        if !is_variable_name(name) {
            return Err(VariableError::BadName {
                name: name.to_owned(),
            });
        }
        visit(Piece::Reference(name))?;
        let consumed = start + 2 + end + 1;
        offset += consumed;
        rest = &rest[consumed..];
    }
    visit(Piece::Literal(rest))
}

/// Letters, digits and `_`, not starting with a digit.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_and_substituted() {
        assert_eq!(
            references("Bearer ${TOKEN} for ${USER}").unwrap(),
            ["TOKEN", "USER"]
        );
        assert_eq!(references("price: $5, ${A}$").unwrap(), ["A"]);
        let value = substitute("Bearer ${TOKEN}!", |name| {
            (name == "TOKEN").then(|| "t0k".to_owned())
        })
        .unwrap();
        assert_eq!(value, "Bearer t0k!");
        assert_eq!(
            substitute("no refs $HOME", |_| None).unwrap(),
            "no refs $HOME"
        );
    }

    #[test]
    fn bad_and_missing_references_are_named() {
        assert_eq!(
            references("x ${OPEN").unwrap_err(),
            VariableError::Unclosed { at: 2 }
        );
        assert_eq!(
            references("${1A}").unwrap_err().to_string(),
            "\"1A\" is not a valid variable name in `${1A}`: use letters, digits and _, not starting with a digit"
        );
        let missing = substitute("${SET} ${UNSET}", |name| {
            (name == "SET").then(|| "secret-value".to_owned())
        })
        .unwrap_err();
        assert_eq!(
            missing,
            VariableError::Missing {
                name: "UNSET".into()
            }
        );
        assert!(!missing.to_string().contains("secret-value"));
    }
}
