//! The dashboard's assets: plain HTML, CSS and ES-module JavaScript under `assets/`, embedded
//! in the binary (release builds; debug builds read them from disk, so an edit shows on reload).
//! The API server serves them (`stigmer-server`'s `http` module); nothing is loaded from
//! anywhere else.

use std::borrow::Cow;

#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

/// One asset: its bytes and its media type.
pub struct Asset {
    pub bytes: Cow<'static, [u8]>,
    pub mime: String,
}

/// The asset at `path` (relative to `assets/`, no leading slash), if there is one.
pub fn asset(path: &str) -> Option<Asset> {
    let file = Assets::get(path)?;
    Some(Asset {
        mime: file.metadata.mimetype().to_owned(),
        bytes: file.data,
    })
}

/// The page every dashboard route starts from.
pub const INDEX: &str = "index.html";

#[cfg(test)]
mod tests {
    //! The invariants of the assets: the page works under `Content-Security-Policy:
    //! default-src 'self'` (no inline script or style attribute, no eval), loads nothing from
    //! elsewhere, every module it imports is there, and the whole stays small.

    use super::*;

    /// Every asset's path and text (all of them are text).
    fn texts() -> Vec<(String, String)> {
        Assets::iter()
            .map(|path| {
                let asset = asset(&path).expect("a listed asset");
                let text = String::from_utf8(asset.bytes.into_owned()).expect("UTF-8 asset");
                (path.into_owned(), text)
            })
            .collect()
    }

    #[test]
    fn the_index_is_html_and_loads_only_its_own_assets_without_inline_code() {
        let index = asset(INDEX).expect("index.html");
        assert_eq!(index.mime, "text/html");
        let html = String::from_utf8(index.bytes.into_owned()).unwrap();
        for script in html.split("<script").skip(1) {
            let tag = &script[..script.find('>').unwrap()];
            assert!(
                tag.contains("src=\"/assets/"),
                "an inline script: <script{tag}>"
            );
            assert!(
                script[tag.len() + 1..].starts_with("</script>"),
                "a script with a body"
            );
        }
        assert!(!html.contains(" style="), "a style attribute");
        let handler = html.split(" on").skip(1).find(|rest| {
            let name = rest.split('=').next().unwrap_or_default();
            rest.contains('=') && name.chars().all(|c| c.is_ascii_lowercase())
        });
        assert!(handler.is_none(), "an inline event handler: on{handler:?}");
        // The error recorder comes before everything else the page runs.
        let recorder = html.find("/assets/errors.js").expect("errors.js");
        assert!(html.find("/assets/app.js").unwrap() > recorder);
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere_or_evaluated() {
        for (path, text) in texts() {
            // An SVG names its XML namespace with a URL; nothing is fetched from it.
            let text = text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            for remote in ["http://", "https://", "url(//", "src=\"//", "href=\"//"] {
                assert!(!text.contains(remote), "{path} refers to {remote}…");
            }
            for evaluated in [
                "eval(",
                "new Function(",
                "innerHTML",
                "setAttribute('style'",
            ] {
                assert!(!text.contains(evaluated), "{path} uses {evaluated}");
            }
        }
    }

    #[test]
    fn every_imported_module_is_an_asset() {
        for (path, text) in texts()
            .into_iter()
            .filter(|(path, _)| path.ends_with(".js"))
        {
            for import in text.split(" from '").skip(1) {
                let target = &import[..import.find('\'').unwrap()];
                let target = target.strip_prefix("./").expect("a relative import");
                assert!(
                    asset(target).is_some(),
                    "{path} imports {target}, which is missing"
                );
            }
        }
    }

    #[test]
    fn the_assets_stay_small() {
        let total: usize = texts().iter().map(|(_, text)| text.len()).sum();
        assert!(total < 200 * 1024, "the assets weigh {total} bytes");
        for (path, _) in texts() {
            let mime = asset(&path).unwrap().mime;
            let expected = match path.rsplit('.').next().unwrap() {
                "js" => "text/javascript",
                "css" => "text/css",
                "html" => "text/html",
                "svg" => "image/svg+xml",
                other => panic!("{path}: an asset of an unexpected type {other}"),
            };
            assert_eq!(mime, expected, "{path}");
        }
    }
}
