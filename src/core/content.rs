//! Message content: a plain string or an array of content parts (text and images, the shape
//! openai-node sends), read from caller JSON with every value checked, and what an image costs
//! in prompt tokens.
//!
//! Image tokens follow OpenAI's documented formula: `detail: 'low'` costs 85; otherwise the
//! image is scaled to fit 2048x2048, then so its shortest side is at most 768, and costs 170 per
//! 512-pixel tile plus 85. The dimensions come from the header of a `data:` URL's image (PNG,
//! JPEG, GIF or WebP, parsed within bounds and never trusted); an `http(s)` URL's image is not
//! fetched, so it is budgeted as a 1024x1024 image at high detail ([`UNKNOWN_IMAGE_TOKENS`]).

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::ChatError;

/// Most content parts one message may carry.
pub const MAX_PARTS: usize = 1000;

/// What a `detail: 'low'` image costs, and the base cost of any other.
pub const IMAGE_BASE_TOKENS: u32 = 85;
/// What each 512x512 tile of a high-detail image adds.
pub const IMAGE_TILE_TOKENS: u32 = 170;
/// The budget of an image whose size is not known (an `http(s)` URL, or a data URL whose header
/// could not be read): the high-detail cost of a 1024x1024 image.
pub const UNKNOWN_IMAGE_TOKENS: u32 = 765;

/// How many base64 characters of a data URL are decoded to find the image's size: enough for a
/// JPEG whose frame header follows large EXIF segments, bounded whatever the URL's length.
const MAX_HEADER_BASE64: usize = 256 * 1024;

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

/// The image of an `image_url` part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageUrl {
    /// `http(s)://...` or `data:image/...;base64,...`.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<ImageDetail>,
}

/// How closely the model looks at an image (and what it costs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageDetail {
    Auto,
    Low,
    High,
}

/// A message's content, serialised as the API takes it: a string, or the parts as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    Parts(Arc<[ContentPart]>),
}

impl Serialize for Content {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Text(text) => text.serialize(s),
            Content::Parts(parts) => parts[..].serialize(s),
        }
    }
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Content::Text(s)
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Content::Text(s.to_owned())
    }
}

impl Content {
    /// The text: the string, or the text parts joined with `'\n'` (what a store row's `text` keeps).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Content::Text(s) => Cow::Borrowed(s),
            Content::Parts(parts) => Cow::Owned(joined_text(parts)),
        }
    }

    /// The string, when the content is one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Content::Text(s) => Some(s),
            Content::Parts(_) => None,
        }
    }

    /// The parts, when the content is an array of them.
    pub fn parts(&self) -> Option<&Arc<[ContentPart]>> {
        match self {
            Content::Text(_) => None,
            Content::Parts(parts) => Some(parts),
        }
    }

    /// Bytes the content adds to a request body, about (for sizing buffers).
    pub fn approx_len(&self) -> usize {
        match self {
            Content::Text(s) => s.len(),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text { text } => text.len().saturating_add(24),
                    ContentPart::ImageUrl { image_url } => image_url.url.len().saturating_add(48),
                })
                .fold(0usize, usize::saturating_add),
        }
    }

    /// Feed the content to a hash: a string as its bytes (as before parts existed, so cache keys
    /// of text messages are unchanged), parts as their JSON after a byte no text holds.
    pub fn hash_into(&self, h: &mut xxhash_rust::xxh3::Xxh3) {
        match self {
            Content::Text(s) => h.update(s.as_bytes()),
            Content::Parts(parts) => {
                h.update(&[0xff]);
                // Parts always serialise.
                h.update(serde_json::to_string(&parts[..]).unwrap_or_default().as_bytes());
            }
        }
    }

    /// Tokens of the content: its text with `count`, plus each image's cost.
    pub fn tokens(&self, count: impl Fn(&str) -> usize) -> usize {
        match self {
            Content::Text(s) => count(s),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text { text } => count(text),
                    ContentPart::ImageUrl { image_url } => image_url.tokens() as usize,
                })
                .fold(0usize, usize::saturating_add),
        }
    }
}

/// The parts of an array that are text or images (read as [`parse_part`] reads them), leaving
/// out parts of other types (`input_audio`, `file`, `refusal`, ...) that a server may take but
/// this client does not send; `Err` names the first text or image part that is malformed.
pub fn known_parts(items: &[Value], path: &str) -> Result<Vec<ContentPart>, ChatError> {
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| matches!(item.get("type").and_then(Value::as_str), Some("text" | "image_url")))
        .map(|(i, item)| parse_part(item, &format!("{path}[{i}]")))
        .collect()
}

/// The text parts of `parts`, joined with `'\n'`.
pub fn joined_text(parts: &[ContentPart]) -> String {
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text { text } => Some(text.as_str()),
            ContentPart::ImageUrl { .. } => None,
        })
        .collect();
    texts.join("\n")
}

impl ImageUrl {
    /// What this image costs in prompt tokens (see the module's notes).
    pub fn tokens(&self) -> u32 {
        if self.detail == Some(ImageDetail::Low) {
            return IMAGE_BASE_TOKENS;
        }
        match data_url_dimensions(&self.url) {
            Some(size) => image_tokens(size, self.detail.unwrap_or(ImageDetail::Auto)),
            None => UNKNOWN_IMAGE_TOKENS,
        }
    }
}

/// An image's size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

/// OpenAI's formula for an image of `size` at `detail` (`auto` is budgeted as `high`, its most).
pub fn image_tokens(size: ImageSize, detail: ImageDetail) -> u32 {
    if detail == ImageDetail::Low {
        return IMAGE_BASE_TOKENS;
    }
    let (mut w, mut h) = (f64::from(size.width.max(1)), f64::from(size.height.max(1)));
    // Fit within 2048x2048.
    let fit = (2048.0 / w.max(h)).min(1.0);
    w *= fit;
    h *= fit;
    // Then the shortest side to 768 (images are scaled down, never up).
    let shrink = (768.0 / w.min(h)).min(1.0);
    w *= shrink;
    h *= shrink;
    // Both sides are now at most 2048: at most 4 x 4 tiles.
    let tiles_w = (w / 512.0).ceil().clamp(1.0, 4.0) as u32;
    let tiles_h = (h / 512.0).ceil().clamp(1.0, 4.0) as u32;
    IMAGE_TILE_TOKENS * tiles_w * tiles_h + IMAGE_BASE_TOKENS
}

/// The size of the image in a `data:image/...;base64,` URL, from its header; `None` for any other
/// URL or a header that cannot be read.
pub fn data_url_dimensions(url: &str) -> Option<ImageSize> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    // A whole number of 4-character groups, so a prefix decodes on its own.
    let take = data.len().min(MAX_HEADER_BASE64) / 4 * 4;
    let prefix = data.get(..take)?;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(prefix).ok()?;
    image_dimensions(&bytes)
}

/// The size of a PNG, JPEG, GIF or WebP image from the start of its bytes.
pub fn image_dimensions(b: &[u8]) -> Option<ImageSize> {
    let size = if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        // The IHDR chunk comes first: width and height big-endian after its type.
        if b.get(12..16)? != b"IHDR" {
            return None;
        }
        ImageSize {
            width: be_u32(b, 16)?,
            height: be_u32(b, 20)?,
        }
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        ImageSize {
            width: le_u16(b, 6)?.into(),
            height: le_u16(b, 8)?.into(),
        }
    } else if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        webp_dimensions(b)?
    } else if b.starts_with(&[0xff, 0xd8]) {
        jpeg_dimensions(b)?
    } else {
        return None;
    };
    (size.width > 0 && size.height > 0).then_some(size)
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn le_u24(b: &[u8], at: usize) -> Option<u32> {
    let [b0, b1, b2]: [u8; 3] = b.get(at..at.checked_add(3)?)?.try_into().ok()?;
    Some(u32::from_le_bytes([b0, b1, b2, 0]))
}

/// WebP's three kinds of first chunk: lossy (`VP8 `), lossless (`VP8L`) and extended (`VP8X`).
fn webp_dimensions(b: &[u8]) -> Option<ImageSize> {
    match b.get(12..16)? {
        b"VP8 " => Some(ImageSize {
            width: u32::from(le_u16(b, 26)? & 0x3fff),
            height: u32::from(le_u16(b, 28)? & 0x3fff),
        }),
        b"VP8L" => {
            let s = b.get(21..25)?;
            let bits = u32::from_le_bytes(s.try_into().ok()?);
            Some(ImageSize {
                width: (bits & 0x3fff) + 1,
                height: ((bits >> 14) & 0x3fff) + 1,
            })
        }
        b"VP8X" => Some(ImageSize {
            width: le_u24(b, 24)? + 1,
            height: le_u24(b, 27)? + 1,
        }),
        _ => None,
    }
}

/// Walks a JPEG's segments to its first frame header (SOFn), which holds the size.
fn jpeg_dimensions(b: &[u8]) -> Option<ImageSize> {
    let mut at = 2usize;
    loop {
        if *b.get(at)? != 0xff {
            return None;
        }
        // Fill bytes: any number of 0xff before a marker.
        while *b.get(at)? == 0xff {
            at = at.checked_add(1)?;
        }
        let marker = *b.get(at)?;
        at = at.checked_add(1)?;
        // Markers without a length: TEM, RSTn (and SOI again).
        if marker == 0x01 || (0xd0..=0xd8).contains(&marker) {
            continue;
        }
        let length = usize::from(be_u16(b, at)?);
        if length < 2 {
            return None;
        }
        let is_frame = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_frame {
            return Some(ImageSize {
                height: be_u16(b, at.checked_add(3)?)?.into(),
                width: be_u16(b, at.checked_add(5)?)?.into(),
            });
        }
        at = at.checked_add(length)?;
    }
}

/// Read an array of content parts from caller JSON; errors name `path` and the part's fields
/// (`content[1].image_url.url`).
pub fn parse_parts(value: &Value, path: &str) -> Result<Arc<[ContentPart]>, ChatError> {
    let Value::Array(items) = value else {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{path}` to be a string or an array of content parts"
        )));
    };
    if items.is_empty() {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{path}` to have at least one content part, got []"
        )));
    }
    if items.len() > MAX_PARTS {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{path}` to have at most {MAX_PARTS} content parts, got {}",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_part(item, &format!("{path}[{i}]")))
        .collect()
}

/// `value` as a short JSON text, for an error message.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(60).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// `object` has no keys but `known`.
fn only_keys(object: &Map<String, Value>, known: &[&str], path: &str) -> Result<(), ChatError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(ChatError::invalid_arg(format!(
            "Unknown key `{path}.{k}`; expected only {}",
            known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Read one content part (see [`parse_parts`]).
pub fn parse_part(item: &Value, path: &str) -> Result<ContentPart, ChatError> {
    let Value::Object(part) = item else {
        return Err(ChatError::invalid_arg(format!(
            "Expected `{path}` to be a content part object, got {}",
            shown(item)
        )));
    };
    match part.get("type").and_then(Value::as_str) {
        Some("text") => {
            only_keys(part, &["type", "text"], path)?;
            match part.get("text") {
                Some(Value::String(text)) => Ok(ContentPart::Text { text: text.clone() }),
                other => Err(ChatError::invalid_arg(format!(
                    "Expected `{path}.text` to be a string, got {}",
                    other.map_or_else(|| "undefined".to_owned(), shown)
                ))),
            }
        }
        Some("image_url") => {
            only_keys(part, &["type", "image_url"], path)?;
            let Some(Value::Object(image)) = part.get("image_url") else {
                return Err(ChatError::invalid_arg(format!(
                    "Expected `{path}.image_url` to be an object with a `url`"
                )));
            };
            let image_path = format!("{path}.image_url");
            only_keys(image, &["url", "detail"], &image_path)?;
            let url = match image.get("url") {
                Some(Value::String(url)) if is_image_url(url) => url.clone(),
                other => {
                    return Err(ChatError::invalid_arg(format!(
                        "Expected `{image_path}.url` to be an http(s) URL or a data:image/...;base64, URL, got {}",
                        other.map_or_else(|| "undefined".to_owned(), shown)
                    )))
                }
            };
            let detail = match image.get("detail") {
                None | Some(Value::Null) => None,
                Some(Value::String(d)) if d == "auto" => Some(ImageDetail::Auto),
                Some(Value::String(d)) if d == "low" => Some(ImageDetail::Low),
                Some(Value::String(d)) if d == "high" => Some(ImageDetail::High),
                Some(other) => {
                    return Err(ChatError::invalid_arg(format!(
                        "Expected `{image_path}.detail` to be 'auto', 'low' or 'high', got {}",
                        shown(other)
                    )))
                }
            };
            Ok(ContentPart::ImageUrl {
                image_url: ImageUrl { url, detail },
            })
        }
        _ => Err(ChatError::invalid_arg(format!(
            "Expected `{path}.type` to be 'text' or 'image_url', got {}",
            part.get("type").map_or_else(|| "undefined".to_owned(), shown)
        ))),
    }
}

/// `http://`, `https://` or a base64 `data:image/` URL.
fn is_image_url(url: &str) -> bool {
    let lower = url.get(..url.len().min(16)).unwrap_or_default().to_ascii_lowercase();
    if let Some(scheme) = ["http://", "https://"].iter().find(|s| lower.starts_with(**s)) {
        return url.len() > scheme.len();
    }
    lower.starts_with("data:image/")
        && url
            .split_once(',')
            .is_some_and(|(meta, _)| meta.to_ascii_lowercase().ends_with(";base64"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorCode;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&[8, 6, 0, 0, 0]);
        b
    }

    fn jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut b = vec![0xff, 0xd8];
        // An APP0 segment to skip, fill bytes, then SOF0.
        b.extend_from_slice(&[0xff, 0xe0, 0, 6, b'J', b'F', b'I', b'F']);
        b.extend_from_slice(&[0xff, 0xff, 0xc0, 0, 11, 8]);
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&[3, 1, 0x22, 0]);
        b
    }

    fn gif(width: u16, height: u16) -> Vec<u8> {
        let mut b = b"GIF89a".to_vec();
        b.extend_from_slice(&width.to_le_bytes());
        b.extend_from_slice(&height.to_le_bytes());
        b
    }

    fn webp(chunk: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = b"RIFF\0\0\0\0WEBP".to_vec();
        b.extend_from_slice(chunk);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(body);
        b
    }

    fn size(width: u32, height: u32) -> Option<ImageSize> {
        Some(ImageSize { width, height })
    }

    #[test]
    fn the_formula_matches_openais_worked_examples() {
        let high = |w, h| image_tokens(ImageSize { width: w, height: h }, ImageDetail::High);
        // 1024x1024 -> 768x768: 4 tiles.
        assert_eq!(high(1024, 1024), 765);
        // 2048x4096 -> 1024x2048 -> 768x1536: 6 tiles.
        assert_eq!(high(2048, 4096), 1105);
        // Small images are not scaled up: one tile.
        assert_eq!(high(100, 100), 255);
        assert_eq!(
            image_tokens(
                ImageSize {
                    width: 4096,
                    height: 4096
                },
                ImageDetail::Low
            ),
            85
        );
        // Extreme shapes stay within the 4 x 4 tiles a 2048x2048 square allows.
        assert!(high(u32::MAX, 1) <= 170 * 16 + 85);
        assert!(high(0, 0) > 0);
        assert_eq!(
            high(1024, 1024),
            image_tokens(size(1024, 1024).unwrap(), ImageDetail::Auto)
        );
    }

    #[test]
    fn headers_of_each_format_give_the_size() {
        assert_eq!(image_dimensions(&png(800, 600)), size(800, 600));
        assert_eq!(image_dimensions(&jpeg(1920, 1080)), size(1920, 1080));
        assert_eq!(image_dimensions(&gif(320, 200)), size(320, 200));
        let mut lossy = vec![0u8; 10];
        lossy[6..8].copy_from_slice(&640u16.to_le_bytes());
        lossy[8..10].copy_from_slice(&480u16.to_le_bytes());
        assert_eq!(image_dimensions(&webp(b"VP8 ", &lossy)), size(640, 480));
        // Lossless: 14 bits each of width - 1 and height - 1, after the 0x2f signature.
        let bits: u32 = 299 | (199 << 14);
        let mut lossless = vec![0x2f];
        lossless.extend_from_slice(&bits.to_le_bytes());
        assert_eq!(image_dimensions(&webp(b"VP8L", &lossless)), size(300, 200));
        let mut extended = vec![0u8; 4];
        extended.extend_from_slice(&[0xff, 0x0f, 0, 0x37, 0x04, 0]);
        assert_eq!(image_dimensions(&webp(b"VP8X", &extended)), size(4096, 1080));
    }

    #[test]
    fn garbage_truncations_and_zero_sizes_give_no_size_and_never_panic() {
        let samples = [png(10, 10), jpeg(10, 10), gif(10, 10), webp(b"VP8X", &[0; 10])];
        for sample in &samples {
            for cut in 0..sample.len() {
                let _ = image_dimensions(&sample[..cut]);
            }
        }
        assert_eq!(image_dimensions(&png(0, 10)), None);
        assert_eq!(image_dimensions(b""), None);
        assert_eq!(image_dimensions(b"not an image"), None);
        // A JPEG whose segment lengths point past the end, or are too short.
        assert_eq!(image_dimensions(&[0xff, 0xd8, 0xff, 0xe0, 0xff, 0xff]), None);
        assert_eq!(image_dimensions(&[0xff, 0xd8, 0xff, 0xe0, 0, 1]), None);
        assert_eq!(image_dimensions(&[0xff, 0xd8, 0xff, 0xff, 0xff]), None);
        // Pseudo-random bytes behind every signature.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..2000 {
            let mut bytes: Vec<u8> = match round % 5 {
                0 => b"\x89PNG\r\n\x1a\n".to_vec(),
                1 => vec![0xff, 0xd8],
                2 => b"GIF89a".to_vec(),
                3 => b"RIFF\0\0\0\0WEBP".to_vec(),
                _ => Vec::new(),
            };
            for _ in 0..(round % 64) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push((x >> 24) as u8);
            }
            let _ = image_dimensions(&bytes);
            let _ = data_url_dimensions(&format!("data:image/png;base64,{}", b64(&bytes)));
        }
    }

    #[test]
    fn data_urls_are_read_http_urls_and_unreadable_ones_are_estimated() {
        let url = format!("data:image/png;base64,{}", b64(&png(2048, 4096)));
        assert_eq!(data_url_dimensions(&url), size(2048, 4096));
        let image = |url: &str, detail| ImageUrl {
            url: url.into(),
            detail,
        };
        assert_eq!(image(&url, None).tokens(), 1105);
        assert_eq!(image(&url, Some(ImageDetail::Low)).tokens(), 85);
        assert_eq!(
            image("https://example.com/cat.png", None).tokens(),
            UNKNOWN_IMAGE_TOKENS
        );
        assert_eq!(
            image("https://example.com/cat.png", Some(ImageDetail::Low)).tokens(),
            85
        );
        assert_eq!(image("data:image/png;base64,@@@@", None).tokens(), UNKNOWN_IMAGE_TOKENS);
        assert_eq!(data_url_dimensions("data:image/png,rawbytes"), None);
        // A long image is read from its first bytes only.
        let mut long = jpeg(640, 480);
        long.resize(4 * MAX_HEADER_BASE64, 0);
        let url = format!("data:image/jpeg;base64,{}", b64(&long));
        assert_eq!(data_url_dimensions(&url), size(640, 480));
    }

    #[test]
    fn parts_are_read_as_given_and_serialise_the_same() {
        let given = json!([
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "Be brief."}
        ]);
        let parts = parse_parts(&given, "content").unwrap();
        assert_eq!(serde_json::to_value(&parts[..]).unwrap(), given);
        let content = Content::Parts(parts);
        assert_eq!(content.text(), "What is this?\nBe brief.");
        assert_eq!(serde_json::to_value(Content::from("hi")).unwrap(), json!("hi"));
        let words = content.tokens(|t| t.split(' ').count());
        assert_eq!(words, 3 + 85 + UNKNOWN_IMAGE_TOKENS as usize + 2);
    }

    #[test]
    fn bad_parts_are_invalid_arguments_naming_the_field() {
        let cases = [
            (json!("text"), "`content`"),
            (json!([]), "`content`"),
            (json!([1]), "`content[0]`"),
            (json!([{"type": "audio"}]), "`content[0].type`"),
            (json!([{"type": "text"}]), "`content[0].text`"),
            (json!([{"type": "text", "text": "a", "extra": 1}]), "`content[0].extra`"),
            (json!([{"type": "image_url"}]), "`content[0].image_url`"),
            (
                json!([{"type": "image_url", "image_url": {"url": "ftp://x"}}]),
                "`content[0].image_url.url`",
            ),
            (
                json!([{"type": "image_url", "image_url": {"url": "data:text/plain;base64,AA"}}]),
                "`content[0].image_url.url`",
            ),
            (
                json!([{"type": "image_url", "image_url": {"url": "https://x", "detail": "max"}}]),
                "`content[0].image_url.detail`",
            ),
        ];
        for (value, named) in cases {
            let e = parse_parts(&value, "content").unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArg);
            assert!(e.message.contains(named), "{value}: {}", e.message);
        }
        let many = Value::Array(vec![json!({"type": "text", "text": "a"}); MAX_PARTS + 1]);
        assert_eq!(parse_parts(&many, "content").unwrap_err().code, ErrorCode::InvalidArg);
    }
}
