//! HTML → title, description and favicon, and the `<meta charset>` prescan.
//!
//! The HTML is tokenized by `lol_html`, a streaming rewriter used here only to read: it
//! reports every start tag with its attributes and its byte position in the input, under a
//! memory limit, and never builds a tree. Character references are decoded by `htmlize`
//! (every HTML5 named entity, with the standard's rules for a missing `;`).
//!
//! Pages are often broken, and a page cut at the size cap always is. A few tolerances are
//! kept on top of the HTML standard's tokenizer, because link previews relied on them:
//! - A `<title>` or `<textarea>` whose end tag never comes ends at the next `<` and the tags
//!   after it are read (the standard would swallow the rest of the page as its text). It is
//!   far more likely that the end tag was lost than that the page is one long title.
//! - A start tag cut off by the end of the input still counts, as if it had been closed
//!   (the standard drops it): the body is cut at the size cap, and the cut may fall inside
//!   the very `<meta>` we want.
//! - The content of `<noscript>` is read as markup, as a browser without scripts does (the
//!   tokenizer takes the side of a browser with scripts, for which it is text).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use htmlize::Context;
use lol_html::html_content::{Element, EndTag};
use lol_html::{
    DocumentContentHandlers, ElementContentHandlers, HtmlRewriter, MemorySettings, Selector,
    Settings,
};
use url::Url;

/// Titles longer than this are cut; a preview card shows far less anyway.
const TITLE_MAX_CHARS: usize = 300;
/// Descriptions are cut too, so one page cannot blow up the JSON answer.
const DESCRIPTION_MAX_CHARS: usize = 1000;
/// How far into the body to look for `<meta charset>`, as browsers do (HTML "prescan").
const CHARSET_PRESCAN_BYTES: usize = 1024;
/// What the tokenizer may allocate beyond the page itself: its stack of open elements and a
/// tag cut at the end of the input. Real pages need a few KiB. About 20 000 elements open at
/// once fit; a page that leaves more open (built to exhaust memory) stops being read there,
/// and what was found before it is kept.
const PARSER_MEMORY_LIMIT: usize = 4 * 1024 * 1024;
/// Each unclosed `<title>`, `<textarea>` or `<noscript>` costs one more tokenizer pass over
/// the rest of the page. Past this many, the next one runs to the end as the standard says, so a page
/// made of unclosed titles costs a bounded number of passes rather than one per tag.
const MAX_UNCLOSED_RESUMES: usize = 8;

/// Title, description and favicon (absolute URL) of an HTML page.
///
/// The title comes from `<title>`, else `og:title`; the description from
/// `<meta name="description">`, else `og:description`; the favicon from the first
/// `<link rel="icon">` (or `shortcut icon`), else `apple-touch-icon`, resolved against
/// `<base href>` or `base`, else `/favicon.ico` of `base`'s origin. Tolerates any input.
pub fn extract_metadata(
    html: &str,
    base: &Url,
) -> (Option<String>, Option<String>, Option<String>) {
    let mut page = PageTags::new(base);
    scan_tags(html, &mut page);
    page.finish()
}

/// The charset a page declares in a `<meta>` tag within its first 1024 bytes.
pub(super) fn sniff_meta_charset(body: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(body.get(..CHARSET_PRESCAN_BYTES).unwrap_or(body));
    let mut sniffer = CharsetSniffer::default();
    scan_tags(&head, &mut sniffer);
    sniffer.label
}

/// What a tag scan reports, in document order.
trait TagVisitor {
    /// Every start tag; attribute values are raw (entities not decoded).
    fn start_tag(&mut self, tag: &Element<'_, '_>);
    /// The raw text of each `<title>` element, before the start tag that follows it.
    fn title_text(&mut self, _raw: &str) {}
}

/// What the page declares, as the tags go by.
struct PageTags<'a> {
    base: &'a Url,
    title: Option<String>,
    og_title: Option<String>,
    description: Option<String>,
    og_description: Option<String>,
    /// (priority, raw href): lower priority wins, the first one seen wins a tie.
    icon: Option<(u8, String)>,
    /// The first `<base href>` that resolves.
    document_base: Option<Url>,
}

impl<'a> PageTags<'a> {
    fn new(base: &'a Url) -> Self {
        Self {
            base,
            title: None,
            og_title: None,
            description: None,
            og_description: None,
            icon: None,
            document_base: None,
        }
    }

    fn meta(&mut self, tag: &Element<'_, '_>) {
        let Some(content) = tag.get_attribute("content") else {
            return;
        };
        for key in [tag.get_attribute("name"), tag.get_attribute("property")]
            .into_iter()
            .flatten()
        {
            let (slot, max_chars) = match key.trim().to_ascii_lowercase().as_str() {
                "description" => (&mut self.description, DESCRIPTION_MAX_CHARS),
                "og:description" => (&mut self.og_description, DESCRIPTION_MAX_CHARS),
                "og:title" => (&mut self.og_title, TITLE_MAX_CHARS),
                _ => continue,
            };
            if slot.is_none() {
                *slot = clean_text(&decode(&content, Context::Attribute), max_chars);
            }
        }
    }

    fn link(&mut self, tag: &Element<'_, '_>) {
        let (Some(rel), Some(href)) = (tag.get_attribute("rel"), tag.get_attribute("href")) else {
            return;
        };
        if let Some(priority) = icon_priority(&rel) {
            if self.icon.as_ref().is_none_or(|(best, _)| priority < *best) {
                self.icon = Some((priority, href));
            }
        }
    }

    fn finish(self) -> (Option<String>, Option<String>, Option<String>) {
        let base = self.document_base.as_ref().unwrap_or(self.base);
        let favicon = self
            .icon
            .and_then(|(_, href)| base.join(decode(&href, Context::Attribute).trim()).ok())
            .filter(is_http_url)
            .or_else(|| self.base.join("/favicon.ico").ok().filter(is_http_url))
            .map(String::from);
        (
            self.title.or(self.og_title),
            self.description.or(self.og_description),
            favicon,
        )
    }
}

impl TagVisitor for PageTags<'_> {
    fn start_tag(&mut self, tag: &Element<'_, '_>) {
        match tag.tag_name().as_str() {
            "meta" => self.meta(tag),
            "link" => self.link(tag),
            "base" if self.document_base.is_none() => {
                self.document_base = tag.get_attribute("href").and_then(|href| {
                    self.base
                        .join(decode(&href, Context::Attribute).trim())
                        .ok()
                });
            }
            _ => {}
        }
    }

    fn title_text(&mut self, raw: &str) {
        // The first title with any text wins; an empty one does not hide a later one.
        if self.title.is_none() {
            self.title = clean_text(&decode(raw, Context::General), TITLE_MAX_CHARS);
        }
    }
}

/// Finds the first `<meta charset>` or `<meta http-equiv="content-type" content="…">`.
#[derive(Default)]
struct CharsetSniffer {
    label: Option<String>,
}

impl TagVisitor for CharsetSniffer {
    fn start_tag(&mut self, tag: &Element<'_, '_>) {
        if self.label.is_some() || tag.tag_name() != "meta" {
            return;
        }
        let label = if let Some(charset) = tag.get_attribute("charset") {
            Some(charset)
        } else if tag
            .get_attribute("http-equiv")
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("content-type"))
        {
            tag.get_attribute("content")
                .and_then(|content| charset_parameter(&content).map(str::to_owned))
        } else {
            None
        };
        let label = label
            .as_deref()
            .map(|label| label.trim().trim_matches(['"', '\'']).trim())
            .filter(|label| !label.is_empty())
            .map(|label| {
                // A page that declares UTF-16 in ASCII-compatible markup is not UTF-16: the
                // HTML standard says to read it as UTF-8.
                if label.to_ascii_lowercase().starts_with("utf-16") {
                    "utf-8".to_owned()
                } else {
                    label.to_owned()
                }
            });
        self.label = label;
    }
}

/// `charset` out of `text/html; charset=iso-8859-1`.
fn charset_parameter(content: &str) -> Option<&str> {
    let lower = content.to_ascii_lowercase();
    let start = lower.find("charset=")? + "charset=".len();
    // `lower` has the same byte offsets as `content` (ASCII lowercasing keeps lengths).
    let rest = content.get(start..)?;
    let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
    rest.get(..end)
}

fn is_http_url(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

/// 0 for `icon` / `shortcut icon`, 1 for `apple-touch-icon` (bigger, but a fine fallback).
fn icon_priority(rel: &str) -> Option<u8> {
    let mut best = None;
    for token in rel.split_ascii_whitespace() {
        if token.eq_ignore_ascii_case("icon") {
            return Some(0);
        }
        if token.to_ascii_lowercase().starts_with("apple-touch-icon") {
            best = Some(1);
        }
    }
    best
}

/// Turns control characters into spaces, collapses whitespace, trims, and cuts to
/// `max_chars` characters. `None` when nothing is left.
fn clean_text(decoded: &str, max_chars: usize) -> Option<String> {
    let spaced: String = decoded
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect();
    let collapsed = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = collapsed.chars().take(max_chars).collect();
    let cut = cut.trim_end();
    (!cut.is_empty()).then(|| cut.to_owned())
}

/// Decodes character references with `htmlize`, except that a numeric reference whose
/// number does not fit in 32 bits (`&#99999999999;`) is left as written, as BoltLink always
/// did; the standard, and so `htmlize`, would make it U+FFFD.
fn decode(raw: &str, context: Context) -> Cow<'_, str> {
    if !raw.contains("&#") {
        return htmlize::unescape_in(raw, context);
    }
    // A reference never contains `&`, so pieces that each start at an `&` decode exactly as
    // the whole text would.
    let mut decoded = String::with_capacity(raw.len());
    let mut start = 0;
    let ends = raw.match_indices('&').map(|(at, _)| at).chain([raw.len()]);
    for end in ends {
        let piece = raw.get(start..end).unwrap_or_default();
        if numeric_reference_overflows(piece) {
            decoded.push_str(piece);
        } else {
            decoded.push_str(&htmlize::unescape_in(piece, context));
        }
        start = end;
    }
    Cow::Owned(decoded)
}

/// Whether `piece` starts with a numeric reference (`&#123`, `&#x1F`) too large for a `u32`.
fn numeric_reference_overflows(piece: &str) -> bool {
    let Some(number) = piece.strip_prefix("&#") else {
        return false;
    };
    let (digits, radix) = match number.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    let length = digits
        .bytes()
        .take_while(|byte| char::from(*byte).is_digit(radix))
        .count();
    let digits = digits.get(..length).unwrap_or_default();
    !digits.is_empty() && u32::from_str_radix(digits, radix).is_err()
}

/// Reports the start tags (and title texts) of `html` to `visitor`, with the tolerances of
/// the module documentation.
fn scan_tags(html: &str, visitor: &mut dyn TagVisitor) {
    let mut rest = html;
    for resumes_left in (0..=MAX_UNCLOSED_RESUMES).rev() {
        match run_pass(rest, visitor).end {
            PassEnd::Stopped => return,
            PassEnd::Complete { consumed } => {
                if let Some(tail) = rest.get(consumed..).filter(|tail| !tail.is_empty()) {
                    read_cut_tag(tail, visitor);
                }
                return;
            }
            PassEnd::Unclosed(open) => {
                let text = rest.get(open.text_start..).unwrap_or_default();
                let end = match (resumes_left, open.kind) {
                    (0, _) => text.len(),
                    // Its text is markup: read it, and everything after, as such.
                    (_, RawText::Noscript) => 0,
                    (_, RawText::Title | RawText::Textarea) => text.find('<').unwrap_or(text.len()),
                };
                if open.kind == RawText::Title {
                    visitor.title_text(text.get(..end).unwrap_or_default());
                }
                match text.get(end..) {
                    Some(after) if !after.is_empty() => rest = after,
                    _ => return,
                }
            }
        }
    }
}

/// `tail` is what the tokenizer had not finished at the end of the input: a start tag cut
/// off (or an end tag, which carries nothing we read). Closing it is tried the three ways
/// it can be open — between attributes or in an unquoted value, in a `"` value, in a `'`
/// value. A wrong closing leaves the tag unfinished, so it reports nothing.
fn read_cut_tag(tail: &str, visitor: &mut dyn TagVisitor) {
    for closing in [">", "\">", "'>"] {
        let closed = format!("{tail}{closing}");
        let pass = run_pass(&closed, visitor);
        if pass.start_tags > 0 {
            if let PassEnd::Unclosed(OpenRawText {
                kind: RawText::Title,
                ..
            }) = pass.end
            {
                // A cut `<title …` has no text yet.
                visitor.title_text("");
            }
            return;
        }
    }
}

/// How one tokenizer pass over an input ended.
struct Pass {
    end: PassEnd,
    start_tags: usize,
}

enum PassEnd {
    /// Tokens were reported up to byte `consumed`; anything after is an unfinished tag.
    Complete { consumed: usize },
    /// A raw-text element never closed: the tokenizer read the rest of the input as its text.
    Unclosed(OpenRawText),
    /// The tokenizer gave up (memory limit); what it reported before stands.
    Stopped,
}

/// Elements whose content the tokenizer reads as text, and that we handle ourselves.
/// (`<script>` and `<style>` are raw text too, and rightly run to the end when unclosed.)
#[derive(Clone, Copy, PartialEq, Eq)]
enum RawText {
    /// Its text is the title.
    Title,
    /// Its text is nothing we read, but an unclosed one must not hide the page.
    Textarea,
    /// Raw text to a browser that runs scripts; markup to one that does not, which is what
    /// a link-preview fetcher is, so its content is scanned as markup.
    Noscript,
}

impl RawText {
    fn of(tag_name: &str) -> Option<Self> {
        match tag_name {
            "title" => Some(Self::Title),
            "textarea" => Some(Self::Textarea),
            "noscript" => Some(Self::Noscript),
            _ => None,
        }
    }
}

/// A raw-text element whose end tag has not been seen yet.
struct OpenRawText {
    kind: RawText,
    /// Where its text starts: right after its start tag.
    text_start: usize,
    /// Where its end tag starts, once seen. Written by the element's own end-tag handler,
    /// which lol_html wants to be 'static, so it cannot borrow the pass state.
    closed_at: Rc<Cell<Option<usize>>>,
}

/// What the handlers of one pass share. lol_html calls them one at a time, never nested.
struct PassState<'v> {
    visitor: &'v mut dyn TagVisitor,
    /// End of the last token reported (start tag, text, comment or doctype).
    consumed: usize,
    start_tags: usize,
    open: Option<OpenRawText>,
}

impl PassState<'_> {
    /// Handles the text of the open raw-text element once it is over: at its end tag, or at
    /// the next start tag (inside `<svg>` these elements are not raw text and may hold tags,
    /// which the pass reports itself).
    fn settle_open(&mut self, input: &str, next_start: Option<usize>) {
        let Some(open) = &self.open else {
            return;
        };
        let closed_at = open.closed_at.get();
        let Some(end) = closed_at.or(next_start) else {
            return;
        };
        let (kind, text_start) = (open.kind, open.text_start);
        self.open = None;
        let text = input.get(text_start..end).unwrap_or_default();
        match kind {
            RawText::Title => self.visitor.title_text(text),
            RawText::Textarea => {}
            // Shorter than the input and free of `</noscript>`, so this recursion ends at
            // the next level.
            RawText::Noscript if closed_at.is_some() => scan_tags(text, &mut *self.visitor),
            RawText::Noscript => {}
        }
    }
}

/// One lol_html pass over `input`.
fn run_pass(input: &str, visitor: &mut dyn TagVisitor) -> Pass {
    let stopped = Pass {
        end: PassEnd::Stopped,
        start_tags: 0,
    };
    let Ok(every_element) = "*".parse::<Selector>() else {
        return stopped;
    };
    let state = RefCell::new(PassState {
        visitor,
        consumed: 0,
        start_tags: 0,
        open: None,
    });
    let on_element = |element: &mut Element<'_, '_>| {
        let mut state = state.borrow_mut();
        let location = element.source_location().bytes();
        state.settle_open(input, Some(location.start));
        state.consumed = state.consumed.max(location.end);
        state.start_tags += 1;
        if let Some(kind) = RawText::of(&element.tag_name()) {
            if let Some(handlers) = element.end_tag_handlers() {
                let closed_at = Rc::new(Cell::new(None));
                let closed = Rc::clone(&closed_at);
                handlers.push(Box::new(move |end: &mut EndTag<'_>| {
                    closed.set(Some(end.source_location().bytes().start));
                    Ok(())
                }));
                state.open = Some(OpenRawText {
                    kind,
                    text_start: location.end,
                    closed_at,
                });
            }
        }
        state.visitor.start_tag(element);
        Ok(())
    };
    let advance = |end: usize| {
        let mut state = state.borrow_mut();
        state.consumed = state.consumed.max(end);
    };
    let settings = Settings::new()
        // Strict mode refuses markup whose parse depends on the tree (`<select><xmp>`); we
        // only read, so the tokenizer's best guess is what we want.
        .with_strict(false)
        .with_memory_settings(
            MemorySettings::new().with_max_allowed_memory_usage(PARSER_MEMORY_LIMIT),
        )
        .append_element_content_handler((
            Cow::Owned(every_element),
            ElementContentHandlers::default().element(on_element),
        ))
        .append_document_content_handler(
            DocumentContentHandlers::default()
                .text(|text: &mut lol_html::html_content::TextChunk<'_>| {
                    advance(text.source_location().bytes().end);
                    Ok(())
                })
                .comments(|comment: &mut lol_html::html_content::Comment<'_>| {
                    advance(comment.source_location().bytes().end);
                    Ok(())
                })
                .doctype(|doctype: &mut lol_html::html_content::Doctype<'_>| {
                    advance(doctype.source_location().bytes().end);
                    Ok(())
                }),
        );

    let parsed = {
        // Only reading: the rewritten output is thrown away.
        let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
        match rewriter.write(input.as_bytes()) {
            Ok(()) => rewriter.end(),
            Err(error) => Err(error),
        }
    };

    let mut state = state.into_inner();
    state.settle_open(input, None);
    let end = match (parsed, state.open) {
        (Err(error), _) => {
            tracing::debug!(%error, "HTML tokenizer stopped; keeping what it read");
            PassEnd::Stopped
        }
        (Ok(()), Some(open)) => PassEnd::Unclosed(open),
        (Ok(()), None) => PassEnd::Complete {
            consumed: state.consumed,
        },
    };
    Pass {
        end,
        start_tags: state.start_tags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URLs are valid")
    }

    #[test]
    fn extract_metadata_reads_a_realistic_page() {
        let html = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <!-- <title>Not this one</title> -->
  <TITLE>
      Rust   &amp; Cargo &#8211; the &quot;book&quot; &#x1F980;
  </TITLE>
  <meta name="viewport" content="width=device-width">
  <meta property="og:title" content="OG title">
  <meta NAME="Description" CONTENT='Learn Rust &lt;fast&gt;, it&#39;s fun.'>
  <meta property="og:description" content="OG description">
  <link rel="stylesheet" href="/style.css">
  <link rel="apple-touch-icon" href="/apple.png">
  <link rel="shortcut icon" href="/static/favicon.png?v=1&amp;x=2">
  <script>document.write("<meta name='description' content='script'>")</script>
</head>
<body><h1>Hello</h1></body>
</html>"#;
        let (title, description, favicon) =
            extract_metadata(html, &url("https://example.com/docs/page"));
        assert_eq!(
            title.as_deref(),
            Some("Rust & Cargo \u{2013} the \"book\" \u{1F980}")
        );
        assert_eq!(description.as_deref(), Some("Learn Rust <fast>, it's fun."));
        assert_eq!(
            favicon.as_deref(),
            Some("https://example.com/static/favicon.png?v=1&x=2")
        );
    }

    #[test]
    fn extract_metadata_falls_back_to_open_graph_and_the_default_favicon() {
        let html = r#"<head><meta property="og:title" content=" Only OG "><meta property=og:description content=Unquoted></head>"#;
        let (title, description, favicon) =
            extract_metadata(html, &url("http://example.org:8080/a/b?c"));
        assert_eq!(title.as_deref(), Some("Only OG"));
        assert_eq!(description.as_deref(), Some("Unquoted"));
        assert_eq!(
            favicon.as_deref(),
            Some("http://example.org:8080/favicon.ico")
        );
    }

    #[test]
    fn extract_metadata_resolves_a_relative_favicon_against_the_page() {
        let base = url("https://example.com/blog/post/");
        let (_, _, favicon) = extract_metadata(r#"<link rel=icon href="../icon.svg">"#, &base);
        assert_eq!(
            favicon.as_deref(),
            Some("https://example.com/blog/icon.svg")
        );

        let (_, _, favicon) =
            extract_metadata(r#"<link href='//cdn.example.net/i.ico' rel='ICON'>"#, &base);
        assert_eq!(favicon.as_deref(), Some("https://cdn.example.net/i.ico"));

        let (_, _, favicon) = extract_metadata(
            r#"<base href="https://static.example.com/x/"><link rel="icon" href="f.ico">"#,
            &base,
        );
        assert_eq!(
            favicon.as_deref(),
            Some("https://static.example.com/x/f.ico")
        );
    }

    #[test]
    fn extract_metadata_prefers_icon_over_apple_touch_icon_whatever_the_order() {
        let html =
            r#"<link rel="apple-touch-icon" href="/apple.png"><link rel="icon" href="/icon.png">"#;
        let (_, _, favicon) = extract_metadata(html, &url("https://example.com/"));
        assert_eq!(favicon.as_deref(), Some("https://example.com/icon.png"));

        let html = r#"<link rel="apple-touch-icon-precomposed" href="/apple.png">"#;
        let (_, _, favicon) = extract_metadata(html, &url("https://example.com/"));
        assert_eq!(favicon.as_deref(), Some("https://example.com/apple.png"));
    }

    #[test]
    fn extract_metadata_ignores_non_http_favicons() {
        let html = r#"<link rel="icon" href="javascript:alert(1)"><link rel="icon" href="data:image/png;base64,AAAA">"#;
        let (_, _, favicon) = extract_metadata(html, &url("https://example.com/x"));
        assert_eq!(favicon.as_deref(), Some("https://example.com/favicon.ico"));
    }

    #[test]
    fn extract_metadata_survives_malformed_html() {
        let base = url("https://example.com/");
        let html = "<<title>>Broken <b>title < 3\n<meta name=description content=\"unterminated";
        let (title, description, _) = extract_metadata(html, &base);
        assert_eq!(title.as_deref(), Some(">Broken"));
        assert_eq!(description.as_deref(), Some("unterminated"));

        let (title, ..) = extract_metadata("<title>Only text, no end", &base);
        assert_eq!(title.as_deref(), Some("Only text, no end"));

        let (title, description, favicon) =
            extract_metadata("<meta =x name= content= ><title></title></", &base);
        assert_eq!((title, description), (None, None));
        assert_eq!(favicon.as_deref(), Some("https://example.com/favicon.ico"));

        let (title, ..) = extract_metadata("<title>a</titlex>b</title >", &base);
        assert_eq!(title.as_deref(), Some("a</titlex>b"));

        let (title, ..) = extract_metadata(
            "<title>&bogus; &#xZZ; &#99999999999; &#0; & amp</title>",
            &base,
        );
        assert_eq!(
            title.as_deref(),
            Some("&bogus; &#xZZ; &#99999999999; \u{fffd} & amp")
        );
    }

    #[test]
    fn extract_metadata_keeps_multibyte_text_around_tags_intact() {
        let html = "é<tïtle>x</tïtle>😀<title>Ünïcødé 😀 ✓</title>日本<meta name=\"description\" content=日本語の説明>ß<link rel=icon href=/ïcon.png>";
        let (title, description, favicon) = extract_metadata(html, &url("https://例え.jp/"));
        assert_eq!(title.as_deref(), Some("Ünïcødé 😀 ✓"));
        assert_eq!(description.as_deref(), Some("日本語の説明"));
        assert_eq!(
            favicon.as_deref(),
            Some("https://xn--r8jz45g.jp/%C3%AFcon.png")
        );
    }

    #[test]
    fn extract_metadata_cuts_titles_at_300_characters() {
        let html = format!("<title>{}</title>", "é".repeat(1000));
        let (title, ..) = extract_metadata(&html, &url("https://example.com/"));
        assert_eq!(title.map(|title| title.chars().count()), Some(300));
    }

    #[test]
    fn extract_metadata_never_panics_on_any_prefix_or_scrambled_input() {
        let base = url("https://example.com/");
        let html = r#"<!doctype html><title a='é'>Ti&amp;tle 😀</title><meta name="description" content='dé&#233;'><link rel=icon href="ü.png"><!-- c --><script>"<"</script>"#;
        for (index, _) in html.char_indices() {
            let _ = extract_metadata(&html[..index], &base);
            let _ = extract_metadata(&html[index..], &base);
        }

        let pieces = [
            "<",
            ">",
            "/",
            "'",
            "\"",
            "=",
            "&",
            "#",
            ";",
            "x",
            "!--",
            "-->",
            " ",
            "é",
            "😀",
            "title",
            "meta",
            "link",
            "script",
            "name",
            "content",
            "rel",
            "icon",
            "href",
            "description",
            "&#",
            "&amp;",
            "</",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            let mut input = String::new();
            for _ in 0..(state % 40) {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let index = usize::try_from((state >> 33) % pieces.len() as u64).unwrap_or(0);
                input.push_str(pieces[index]);
            }
            let _ = extract_metadata(&input, &base);
            let _ = sniff_meta_charset(input.as_bytes());
        }
    }

    #[test]
    fn meta_charset_is_found_in_both_spellings() {
        assert_eq!(
            sniff_meta_charset(br#"<html><head><meta charset="ISO-8859-1">"#).as_deref(),
            Some("ISO-8859-1")
        );
        assert_eq!(
            sniff_meta_charset(
                br#"<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">"#
            )
            .as_deref(),
            Some("windows-1251")
        );
        assert_eq!(
            sniff_meta_charset(b"<meta charset=utf-16>").as_deref(),
            Some("utf-8")
        );
        assert_eq!(sniff_meta_charset(b"<title>no charset</title>"), None);
    }

    #[test]
    fn every_html5_entity_is_decoded_with_the_standard_rules_for_a_missing_semicolon() {
        let base = url("https://example.com/");
        let (title, description, favicon) = extract_metadata(
            r#"<title>&eacute;t&eacute; &hearts; &CounterClockwiseContourIntegral; &copy 2024 AT&T</title>
            <meta name="description" content="a=1&copy=2 &amp; 3&nbsp;&lt;4&gt;">
            <link rel="icon" href="/i.png?a=1&copy=2&amp;b=3">"#,
            &base,
        );
        assert_eq!(
            title.as_deref(),
            Some("\u{e9}t\u{e9} \u{2665} \u{2233} \u{a9} 2024 AT&T")
        );
        // In an attribute, `&copy=` is no reference (a query string), `&amp;` still is.
        assert_eq!(description.as_deref(), Some("a=1&copy=2 & 3 <4>"));
        assert_eq!(
            favicon.as_deref(),
            Some("https://example.com/i.png?a=1&copy=2&b=3")
        );
    }

    #[test]
    fn a_tag_cut_off_by_the_end_of_the_input_is_read_however_it_was_open() {
        let base = url("https://example.com/");
        for cut in [
            "<meta name=description content=\"cut here",
            "<meta name=description content='cut here",
            "<meta content=cut name=description",
            "<meta name=description content=cut here",
        ] {
            let (_, description, _) = extract_metadata(&format!("<p>x</p>{cut}"), &base);
            assert!(
                description.as_deref().is_some_and(|d| d.starts_with("cut")),
                "{cut}: {description:?}"
            );
        }
        let (title, ..) = extract_metadata("<title>Kept</title><title", &base);
        assert_eq!(title.as_deref(), Some("Kept"));
        let (_, _, favicon) = extract_metadata("<link rel=icon href='/i.png", &base);
        assert_eq!(favicon.as_deref(), Some("https://example.com/i.png"));
    }

    #[test]
    fn an_unclosed_textarea_ends_at_the_next_tag_like_an_unclosed_title() {
        let base = url("https://example.com/");
        let (title, description, _) = extract_metadata(
            "<textarea>draft<title>Seen</title><meta name=description content=d>",
            &base,
        );
        assert_eq!(title.as_deref(), Some("Seen"));
        assert_eq!(description.as_deref(), Some("d"));
    }

    #[test]
    fn a_page_of_unclosed_titles_costs_a_bounded_number_of_passes() {
        // One pass per unclosed title would be quadratic: 200 000 passes over a megabyte.
        let html = "<title>a".repeat(200_000);
        let started = std::time::Instant::now();
        let (title, ..) = extract_metadata(&html, &url("https://example.com/"));
        assert_eq!(title.as_deref(), Some("a"));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn markup_nested_past_the_memory_limit_stops_the_scan_and_keeps_what_came_before() {
        // A megabyte (the default size cap) of open elements: the tokenizer's stack of open
        // elements would outgrow the limit, so the scan stops there without an error.
        let mut html = String::from("<title>Before</title>");
        html.push_str(&"<div>".repeat(200_000));
        html.push_str("<meta name=description content=after>");
        let (title, description, _) = extract_metadata(&html, &url("https://example.com/"));
        assert_eq!(title.as_deref(), Some("Before"));
        assert_eq!(description, None);
    }

    #[test]
    fn tags_inside_noscript_are_read_as_a_browser_without_scripts_reads_them() {
        let base = url("https://example.com/");
        let (title, description, favicon) = extract_metadata(
            "<head><noscript><link rel=icon href=/ns.ico><meta name=description content=d>\
             </noscript><title>After</title>",
            &base,
        );
        assert_eq!(title.as_deref(), Some("After"));
        assert_eq!(description.as_deref(), Some("d"));
        assert_eq!(favicon.as_deref(), Some("https://example.com/ns.ico"));

        let (title, ..) = extract_metadata("<noscript><title>Unclosed noscript</title>", &base);
        assert_eq!(title.as_deref(), Some("Unclosed noscript"));
    }
}
