//! Turning what a server answers into text for the model: a `tools/call` result
//! ([`render_result`]) and the server's instructions ([`cap_instructions`]).

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

use base64::Engine as _;

use crate::{CallImage, CallOutcome, IMAGE_LIMIT};

/// Longest instructions text kept, in bytes (before the `…` marking a cut).
pub const INSTRUCTIONS_LIMIT: usize = 2048;

/// A call's result as model-visible text: `structuredContent` as compact JSON when present,
/// else the content blocks joined by newlines (text as is; an image block kept aside in
/// `images`, or as a placeholder with its MIME type and size when it is over [`IMAGE_LIMIT`]
/// or not valid base64; an audio block as a placeholder; a resource link as its name or title
/// and URI; an embedded text resource as its text, a binary one as a placeholder). `is_error`
/// is the server's.
pub fn render_result(result: &CallToolResult) -> CallOutcome {
    let is_error = result.is_error.unwrap_or(false);
    if let Some(structured) = &result.structured_content {
        return CallOutcome {
            text: structured.to_string(),
            is_error,
            images: Vec::new(),
        };
    }
    let mut images = Vec::new();
    let parts: Vec<String> = result
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Image(image) => match kept_image(&image.mime_type, &image.data) {
                Ok(kept) => {
                    images.push(kept);
                    None
                }
                Err(placeholder) => Some(placeholder),
            },
            other => Some(render_block(other)),
        })
        .collect();
    CallOutcome {
        text: parts.join("\n"),
        is_error,
        images,
    }
}

/// An image block as kept for the model, or the placeholder that replaces it.
fn kept_image(mime_type: &str, data: &str) -> Result<CallImage, String> {
    let size = base64_decoded_len(data);
    if size > IMAGE_LIMIT {
        return Err(format!("[image omitted: {mime_type}, {size} bytes]"));
    }
    let data: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if base64::engine::general_purpose::STANDARD
        .decode(&data)
        .is_err()
    {
        return Err(format!("[image omitted: {mime_type}, not valid base64]"));
    }
    Ok(CallImage {
        mime_type: mime_type.to_owned(),
        data,
    })
}

fn render_block(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text(text) => text.text.clone(),
        ContentBlock::Image(image) => format!(
            "[image omitted: {}, {} bytes]",
            image.mime_type,
            base64_decoded_len(&image.data)
        ),
        ContentBlock::Audio(audio) => format!(
            "[audio omitted: {}, {} bytes]",
            audio.mime_type,
            base64_decoded_len(&audio.data)
        ),
        ContentBlock::ResourceLink(link) => {
            let label = link.title.as_deref().unwrap_or(&link.name);
            format!("{label}: {}", link.uri)
        }
        ContentBlock::Resource(embedded) => match &embedded.resource {
            ResourceContents::TextResourceContents { text, .. } => text.clone(),
            ResourceContents::BlobResourceContents {
                uri,
                mime_type,
                blob,
                ..
            } => format!(
                "[resource omitted: {uri}, {}, {} bytes]",
                mime_type.as_deref().unwrap_or("application/octet-stream"),
                base64_decoded_len(blob)
            ),
            other => format!("[resource omitted: {}]", resource_uri(other)),
        },
        other => format!(
            "[content omitted: {}]",
            serde_json::to_value(other)
                .ok()
                .and_then(|value| value
                    .get("type")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned())
        ),
    }
}

fn resource_uri(contents: &ResourceContents) -> String {
    serde_json::to_value(contents)
        .ok()
        .and_then(|value| {
            value
                .get("uri")
                .and_then(|uri| uri.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// The size of the data a base64 text holds, without decoding it.
fn base64_decoded_len(data: &str) -> usize {
    let significant = data.bytes().filter(|b| !b.is_ascii_whitespace()).count();
    let padding = data.bytes().rev().take_while(|&b| b == b'=').count().min(2);
    (significant / 4) * 3
        + match significant % 4 {
            2 => 1,
            3 => 2,
            _ => 0,
        }
        - if significant % 4 == 0 { padding } else { 0 }
}

/// `instructions` cut to at most [`INSTRUCTIONS_LIMIT`] bytes at a character boundary, with
/// `…` appended when cut.
pub fn cap_instructions(instructions: &str) -> String {
    if instructions.len() <= INSTRUCTIONS_LIMIT {
        return instructions.to_owned();
    }
    let mut end = INSTRUCTIONS_LIMIT;
    while !instructions.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &instructions[..end])
}

#[cfg(test)]
mod tests {
    use rmcp::model::{EmbeddedResource, ImageContent, Resource, TextContent};

    use super::*;

    fn result(content: Vec<ContentBlock>) -> CallToolResult {
        CallToolResult::success(content)
    }

    #[test]
    fn text_blocks_are_joined() {
        let outcome = render_result(&result(vec![
            ContentBlock::Text(TextContent::new("one")),
            ContentBlock::Text(TextContent::new("two")),
        ]));
        assert_eq!(outcome.text, "one\ntwo");
        assert!(!outcome.is_error);
    }

    #[test]
    fn structured_content_wins() {
        let mut value = result(vec![ContentBlock::Text(TextContent::new("ignored"))]);
        value.structured_content = Some(serde_json::json!({"a": 1, "b": [true]}));
        assert_eq!(render_result(&value).text, r#"{"a":1,"b":[true]}"#);
    }

    #[test]
    fn images_links_and_resources() {
        let outcome = render_result(&result(vec![
            ContentBlock::Image(ImageContent::new("AAAA", "image/png")),
            ContentBlock::ResourceLink(Resource::new("file:///x.txt", "x.txt")),
            ContentBlock::Resource(EmbeddedResource::new(ResourceContents::text(
                "inside",
                "file:///y",
            ))),
        ]));
        assert_eq!(outcome.text, "x.txt: file:///x.txt\ninside");
        assert_eq!(
            outcome.images,
            [CallImage {
                mime_type: "image/png".into(),
                data: "AAAA".into()
            }]
        );
    }

    #[test]
    fn an_image_too_large_or_not_base64_is_a_placeholder() {
        let large = "A".repeat((IMAGE_LIMIT / 3 + 1) * 4);
        let outcome = render_result(&result(vec![
            ContentBlock::Text(TextContent::new("before")),
            ContentBlock::Image(ImageContent::new(large, "image/png")),
            ContentBlock::Image(ImageContent::new("not base64!", "image/jpeg")),
            ContentBlock::Image(ImageContent::new("QUJD\nRA==", "image/gif")),
        ]));
        assert_eq!(
            outcome.text,
            "before\n[image omitted: image/png, 5242881 bytes]\n[image omitted: image/jpeg, not valid base64]"
        );
        assert_eq!(
            outcome.images,
            [CallImage {
                mime_type: "image/gif".into(),
                data: "QUJDRA==".into()
            }]
        );
    }

    #[test]
    fn errors_are_kept() {
        let value = CallToolResult::error(vec![ContentBlock::Text(TextContent::new("bad"))]);
        let outcome = render_result(&value);
        assert!(outcome.is_error);
        assert_eq!(outcome.text, "bad");
    }

    #[test]
    fn base64_sizes() {
        assert_eq!(base64_decoded_len(""), 0);
        assert_eq!(base64_decoded_len("QQ=="), 1);
        assert_eq!(base64_decoded_len("QUI="), 2);
        assert_eq!(base64_decoded_len("QUJD"), 3);
        assert_eq!(base64_decoded_len("QUJDRA"), 4);
    }

    #[test]
    fn instructions_are_capped_on_a_character_boundary() {
        assert_eq!(cap_instructions("short"), "short");
        let exact = "a".repeat(INSTRUCTIONS_LIMIT);
        assert_eq!(cap_instructions(&exact), exact);
        let long = format!("{}é and more", "a".repeat(INSTRUCTIONS_LIMIT - 1));
        let capped = cap_instructions(&long);
        assert_eq!(capped, format!("{}…", "a".repeat(INSTRUCTIONS_LIMIT - 1)));
    }
}
