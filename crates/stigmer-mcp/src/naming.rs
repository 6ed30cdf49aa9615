//! The tool names offered to the model: `<server>__<tool>`, every character outside
//! `[A-Za-z0-9_-]` replaced by `_`, at most [`MAX_OFFERED_NAME`] characters (the limit model
//! providers put on function names). A longer name keeps its beginning and ends with `_` and
//! 8 hex digits of the SHA-256 of the full, un-truncated name, so it is stable across runs and
//! two long names differing only at the end stay distinct. Sanitising can still map two tools
//! to one name: [`offer`] refuses that and names both.

use sha2::{Digest, Sha256};

use crate::ToolInfo;

/// Longest offered name, in characters (all ASCII).
pub const MAX_OFFERED_NAME: usize = 64;

/// Length of the hash suffix, `_` included.
const HASH_SUFFIX: usize = 1 + 8;

/// The name the model sees for `tool` of `server`.
pub fn offered_name(server: &str, tool: &str) -> String {
    let full = format!("{server}__{tool}");
    let sanitised: String = full
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if sanitised.len() <= MAX_OFFERED_NAME {
        return sanitised;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest[..4]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    // `sanitised` is ASCII, so any byte index is a character boundary.
    format!("{}_{hex}", &sanitised[..MAX_OFFERED_NAME - HASH_SUFFIX])
}

/// One tool as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedTool {
    /// The name the model calls.
    pub offered: String,
    /// The server it belongs to.
    pub server: String,
    pub tool: ToolInfo,
}

/// Two tools that would be offered under the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the tool `{first_tool}` of MCP server `{first_server}` and the tool `{second_tool}` of MCP \
     server `{second_server}` would both be offered as `{offered}`; rename one of the servers or \
     leave one tool out with enabledTools"
)]
pub struct NameClash {
    pub offered: String,
    pub first_server: String,
    pub first_tool: String,
    pub second_server: String,
    pub second_tool: String,
}

/// The offered tools of all servers, in the order given (servers, then each server's tools).
pub fn offer<'a>(
    servers: impl IntoIterator<Item = (&'a str, &'a [ToolInfo])>,
) -> Result<Vec<OfferedTool>, NameClash> {
    let mut offered: Vec<OfferedTool> = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (server, tools) in servers {
        for tool in tools {
            let name = offered_name(server, &tool.name);
            if let Some(&index) = seen.get(&name) {
                let first = &offered[index];
                return Err(NameClash {
                    offered: name,
                    first_server: first.server.clone(),
                    first_tool: first.tool.name.clone(),
                    second_server: server.to_owned(),
                    second_tool: tool.name.clone(),
                });
            }
            seen.insert(name.clone(), offered.len());
            offered.push(OfferedTool {
                offered: name,
                server: server.to_owned(),
                tool: tool.clone(),
            });
        }
    }
    Ok(offered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> ToolInfo {
        ToolInfo {
            name: name.to_owned(),
            description: None,
            input_schema: serde_json::json!({"type": "object"}),
            read_only: false,
            reads_only: false,
        }
    }

    #[test]
    fn plain_names_are_joined() {
        assert_eq!(
            offered_name("github", "create_issue"),
            "github__create_issue"
        );
        assert_eq!(offered_name("my-server", "get-sum"), "my-server__get-sum");
    }

    #[test]
    fn other_characters_become_underscores() {
        assert_eq!(offered_name("fs.local", "read file"), "fs_local__read_file");
        assert_eq!(offered_name("é", "a/b:c"), "___a_b_c");
    }

    #[test]
    fn exactly_64_is_kept_and_65_is_hashed() {
        let server = "s";
        let tool64 = "t".repeat(64 - 3);
        let name = offered_name(server, &tool64);
        assert_eq!(name.len(), 64);
        assert_eq!(name, format!("s__{tool64}"));

        let tool65 = "t".repeat(65 - 3);
        let name = offered_name(server, &tool65);
        assert_eq!(name.len(), 64);
        assert_eq!(&name[..55], &format!("s__{tool65}")[..55]);
        assert_eq!(&name[55..56], "_");
        assert!(name[56..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn long_names_are_stable_and_distinct() {
        let long = "x".repeat(100);
        let first = offered_name("server", &format!("{long}a"));
        let again = offered_name("server", &format!("{long}a"));
        let other = offered_name("server", &format!("{long}b"));
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert_eq!(first.len(), MAX_OFFERED_NAME);
        // The hash is of the full name: the known digest of "server__" + 100 x + "a".
        let digest = Sha256::digest(format!("server__{long}a").as_bytes());
        let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        assert!(first.ends_with(&format!("_{hex}")));
    }

    #[test]
    fn multibyte_names_are_hashed_on_the_sanitised_length() {
        // 40 two-byte characters: 80 bytes but 40 characters, sanitised to 40 `_`.
        let tool = "é".repeat(40);
        let name = offered_name("s", &tool);
        assert_eq!(name, format!("s__{}", "_".repeat(40)));
    }

    #[test]
    fn offer_keeps_order_and_refuses_clashes() {
        let a = [tool("read"), tool("write")];
        let b = [tool("read")];
        let offered = offer([("a", &a[..]), ("b", &b[..])]).unwrap();
        let names: Vec<&str> = offered.iter().map(|o| o.offered.as_str()).collect();
        assert_eq!(names, ["a__read", "a__write", "b__read"]);
        assert_eq!(offered[2].server, "b");

        let dotted = [tool("x.y")];
        let underscored = [tool("x_y")];
        let clash = offer([("s", &dotted[..]), ("s", &underscored[..])]).unwrap_err();
        assert_eq!(clash.offered, "s__x_y");
        assert_eq!(clash.first_tool, "x.y");
        assert_eq!(clash.second_tool, "x_y");
        let message = clash.to_string();
        assert!(
            message.contains("`x.y`") && message.contains("`x_y`"),
            "{message}"
        );

        let server_clash = offer([("a.b", &a[..]), ("a_b", &a[..])]).unwrap_err();
        assert_eq!(server_clash.first_server, "a.b");
        assert_eq!(server_clash.second_server, "a_b");
    }
}
