//! Proto comments to rustdoc: `#[doc]` attributes that render as written and never
//! become doctests or broken links.

use proc_macro2::TokenStream;
use quote::quote;

/// `#[doc = "..."]` attributes, one per line, each non-empty line after one space (as
/// `/// text` gives), so that rustdoc, which removes the indentation all lines share,
/// keeps every line's own.
pub(crate) fn attrs(lines: &[String]) -> TokenStream {
    let lines = lines.iter().map(|line| doc_line(line));
    quote! { #( #[doc = #lines] )* }
}

/// Lines from [`from_proto`] as tonic's generator wants them: it adds a space only to
/// lines that have none, so every non-empty line gets its own here.
pub(crate) fn for_tonic(comments: &[String]) -> Vec<String> {
    from_proto(comments).iter().map(|l| doc_line(l)).collect()
}

fn doc_line(line: &str) -> String {
    if line.is_empty() {
        String::new()
    } else {
        format!(" {line}")
    }
}

/// What a markdown line is to the escaping pass.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Part of a paragraph: escaped together with its neighbours.
    Prose,
    /// A heading: escaped on its own.
    Heading,
    /// Code, a fence or a blank line: left as it is.
    Verbatim,
}

/// The block a lazy continuation line would belong to.
#[derive(Clone, Copy)]
enum Container {
    /// A list item whose text starts at this column.
    ListItem(usize),
    /// A block quote.
    Quote,
}

/// Proto comment lines (as the source info holds them) to markdown that rustdoc shows
/// as the author meant it:
///
/// - the common indentation is removed (`// text` gives ` text`);
/// - an indented block becomes a fenced `text` block, and a fenced block without a
///   language (or marked `rust`) becomes `text`, so rustdoc never compiles proto
///   examples as doctests;
/// - a lazy continuation line of a list item is indented, and one of a block quote gets
///   its `>`, as clippy's `doc_lazy_continuation` asks;
/// - outside code spans, `[x]` that is not a link is escaped, bare URLs become autolinks
///   and `<tag` is escaped, so rustdoc reports no broken links or unclosed HTML. Code
///   spans are found over a whole paragraph, as markdown does: one may run across lines,
///   and a backtick with no closing one is text.
pub(crate) fn from_proto(comments: &[String]) -> Vec<String> {
    let expanded: Vec<String> = comments
        .iter()
        .map(|line| line.replace('\t', "    ").trim_end().to_owned())
        .collect();
    let indent = expanded
        .iter()
        .filter(|line| !line.is_empty())
        .map(|line| leading_spaces(line))
        .min()
        .unwrap_or(0);
    // Every non-empty line starts with at least `indent` ASCII spaces.
    let lines: Vec<&str> = expanded
        .iter()
        .map(|line| line.get(indent..).unwrap_or(""))
        .collect();
    let start = lines
        .iter()
        .position(|l| !l.is_empty())
        .unwrap_or(lines.len());
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(start, |i| i + 1);
    escape(&blocks(&lines[start..end]))
}

/// The first pass: code blocks fenced, lazy continuations made explicit, every line
/// tagged for the escaping pass.
fn blocks(lines: &[&str]) -> Vec<(String, Kind)> {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    let mut indented = false;
    // Whether the line before ended a block, so that an indented line starts code.
    let mut block_start = true;
    let mut container: Option<Container> = None;
    for (i, line) in lines.iter().enumerate() {
        if let Some(marker) = &fence {
            if line.trim_start().starts_with(marker.as_str()) {
                fence = None;
                block_start = true;
            }
            out.push(((*line).to_owned(), Kind::Verbatim));
            continue;
        }
        if indented {
            if line.is_empty() {
                // A blank line continues the block only if more indented lines follow.
                let continues = lines[i + 1..]
                    .iter()
                    .find(|l| !l.is_empty())
                    .is_some_and(|l| is_indented(l));
                if continues {
                    out.push((String::new(), Kind::Verbatim));
                    continue;
                }
            } else if is_indented(line) {
                out.push((line[4..].to_owned(), Kind::Verbatim));
                continue;
            }
            out.push(("```".to_owned(), Kind::Verbatim));
            indented = false;
        }
        let trimmed = line.trim_start();
        if let Some(marker) = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m)) {
            let info = trimmed.trim_start_matches(marker.chars().next().unwrap_or('`'));
            let prefix = &line[..line.len() - trimmed.len()];
            let run = trimmed.len() - info.len();
            fence = Some(trimmed[..run].to_owned());
            let opening = format!("{prefix}{}{}", &trimmed[..run], fence_info(info.trim()));
            out.push((opening, Kind::Verbatim));
            container = None;
            continue;
        }
        if line.is_empty() {
            out.push((String::new(), Kind::Verbatim));
            block_start = true;
            container = None;
            continue;
        }
        if block_start && is_indented(line) {
            out.push(("```text".to_owned(), Kind::Verbatim));
            out.push((line[4..].to_owned(), Kind::Verbatim));
            indented = true;
            container = None;
            continue;
        }
        if is_heading(line) || is_thematic_break(line) {
            out.push(((*line).to_owned(), Kind::Heading));
            block_start = true;
            container = None;
            continue;
        }
        block_start = false;
        if trimmed.starts_with('>') {
            container = Some(Container::Quote);
        } else if let Some(column) = list_item_column(line) {
            container = Some(Container::ListItem(column));
        } else {
            match container {
                Some(Container::ListItem(column)) if leading_spaces(line) < column => {
                    out.push((format!("{}{trimmed}", " ".repeat(column)), Kind::Prose));
                    continue;
                }
                Some(Container::Quote) => {
                    out.push((format!("> {line}"), Kind::Prose));
                    continue;
                }
                _ => {}
            }
        }
        out.push(((*line).to_owned(), Kind::Prose));
    }
    if indented || fence.is_some() {
        out.push((fence.unwrap_or_else(|| "```".to_owned()), Kind::Verbatim));
    }
    out
}

/// The second pass: each paragraph (a run of prose lines) and each heading escaped as a
/// whole, code and blank lines kept.
fn escape(lines: &[(String, Kind)]) -> Vec<String> {
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let (line, kind) = &lines[i];
        let run = match kind {
            Kind::Verbatim => {
                out.push(line.clone());
                i += 1;
                continue;
            }
            Kind::Heading => 1,
            Kind::Prose => lines[i..]
                .iter()
                .take_while(|(_, k)| *k == Kind::Prose)
                .count(),
        };
        let paragraph: Vec<&str> = lines[i..i + run].iter().map(|(l, _)| l.as_str()).collect();
        out.extend(
            escape_prose(&paragraph.join("\n"))
                .split('\n')
                .map(str::to_owned),
        );
        i += run;
    }
    out
}

fn leading_spaces(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// `# Title` to `###### Title`, indented at most three spaces.
fn is_heading(line: &str) -> bool {
    let trimmed = line.trim_start_matches(' ');
    let hashes = trimmed.len() - trimmed.trim_start_matches('#').len();
    leading_spaces(line) <= 3
        && (1..=6).contains(&hashes)
        && trimmed[hashes..].chars().next().is_none_or(|c| c == ' ')
}

/// `***`, `---`, `___` (three or more, spaces allowed), indented at most three spaces.
fn is_thematic_break(line: &str) -> bool {
    let trimmed = line.trim();
    let Some(mark) = trimmed
        .chars()
        .next()
        .filter(|c| matches!(c, '*' | '-' | '_'))
    else {
        return false;
    };
    leading_spaces(line) <= 3
        && trimmed.chars().all(|c| c == mark || c == ' ')
        && trimmed.chars().filter(|&c| c == mark).count() >= 3
}

/// The column where a list item's text starts (`- a`: 2, `10. a`: 4), or `None` when the
/// line is not a list item.
fn list_item_column(line: &str) -> Option<usize> {
    let indent = leading_spaces(line);
    let rest = &line[indent..];
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let marker = match rest.as_bytes().get(digits) {
        Some(b'-' | b'*' | b'+') if digits == 0 => 1,
        Some(b'.' | b')') if (1..=9).contains(&digits) => digits + 1,
        _ => return None,
    };
    let after = &rest[marker..];
    let spaces = leading_spaces(after);
    if spaces == 0 && !after.is_empty() {
        return None;
    }
    // Five or more spaces: the text is an indented code block, which starts one column on.
    let spaces = if spaces == 0 || spaces > 4 { 1 } else { spaces };
    Some(indent + marker + spaces)
}

fn is_indented(line: &str) -> bool {
    line.starts_with("    ")
}

/// The info string of a fenced block: anything rustdoc would run becomes `text`.
fn fence_info(info: &str) -> String {
    const RUSTDOC: &[&str] = &[
        "rust",
        "ignore",
        "should_panic",
        "no_run",
        "compile_fail",
        "test_harness",
        "standalone_crate",
    ];
    let runs_as_rust = info
        .split([',', ' '])
        .filter(|t| !t.is_empty())
        .all(|t| RUSTDOC.contains(&t) || t.starts_with("edition"));
    if runs_as_rust {
        "text".to_owned()
    } else {
        info.to_owned()
    }
}

/// Escapes prose (one paragraph, lines joined by `\n`), leaving code spans alone: a run of
/// backticks opens a span that the next run of the same length closes; a run that is
/// never closed is text.
fn escape_prose(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 8);
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b'`') => i += 2,
            b'`' => {
                let run = backtick_run(&bytes[i..]);
                match closing_run(&bytes[i + run..], run) {
                    Some(close) => {
                        let end = i + run + close + run;
                        out.push_str(&escape_text(&text[plain..i]));
                        out.push_str(&text[i..end]);
                        plain = end;
                        i = end;
                    }
                    None => i += run,
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&escape_text(&text[plain..]));
    out
}

fn backtick_run(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| b == b'`').count()
}

/// Where in `bytes` a run of exactly `len` backticks starts.
fn closing_run(bytes: &[u8], len: usize) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let run = backtick_run(&bytes[i..]);
            if run == len {
                return Some(i);
            }
            i += run;
        } else {
            i += 1;
        }
    }
    None
}

fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut previous: Option<char> = None;
    // `at`: the byte where the text not yet written starts.
    let mut at = 0;
    while let Some(c) = text[at..].chars().next() {
        let rest = &text[at..];
        let escaped = previous == Some('\\');
        if c == '<' && !escaped {
            if let Some(len) = autolink_len(rest) {
                out.push_str(&rest[..len]);
                at += len;
                previous = Some('>');
                continue;
            }
            if rest[1..]
                .chars()
                .next()
                .is_some_and(|n| n.is_ascii_alphabetic() || n == '/' || n == '!')
            {
                out.push_str("\\<");
                at += 1;
                previous = Some(c);
                continue;
            }
        }
        if (rest.starts_with("http://") || rest.starts_with("https://"))
            && !matches!(previous, Some('<' | '(' | '"'))
        {
            let len = rest
                .find(|ch: char| ch.is_whitespace() || matches!(ch, ')' | '>' | '"'))
                .unwrap_or(rest.len());
            let url = rest[..len].trim_end_matches(['.', ',', ';', ':']);
            out.push('<');
            out.push_str(url);
            out.push('>');
            at += url.len();
            previous = url.chars().next_back();
            continue;
        }
        if c == '['
            && !escaped
            && previous != Some(']')
            && let Some(close) = rest[1..].find(']')
        {
            let close = 1 + close;
            let is_link = matches!(rest[close + 1..].chars().next(), Some('(' | '['));
            if !is_link {
                out.push_str("\\[");
                out.push_str(&rest[1..close]);
                out.push_str("\\]");
                at += close + 1;
                previous = Some(']');
                continue;
            }
        }
        out.push(c);
        at += c.len_utf8();
        previous = Some(c);
    }
    out
}

/// Length in bytes of an autolink (`<https://...>`) at the start of `text`.
fn autolink_len(text: &str) -> Option<usize> {
    let inner = text.strip_prefix('<')?;
    if !(inner.starts_with("http://") || inner.starts_with("https://")) {
        return None;
    }
    let close = inner.find('>')?;
    (!inner[..close].contains(char::is_whitespace)).then_some(close + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn dedents_and_trims() {
        assert_eq!(
            from_proto(&lines("\n Validates a token.\n   Indented by two.\n\n")),
            vec!["Validates a token.", "  Indented by two."]
        );
        assert_eq!(from_proto(&[]), Vec::<String>::new());
    }

    #[test]
    fn indented_blocks_become_text_fences() {
        let got = from_proto(&lines(
            " Example:\n\n     let x = 1;\n\n     x += 1;\n\n After.",
        ));
        assert_eq!(
            got,
            vec![
                "Example:",
                "",
                "```text",
                "let x = 1;",
                "",
                "x += 1;",
                "```",
                "",
                "After."
            ]
        );
        // An indented line right after prose is a lazy continuation, not code.
        assert_eq!(from_proto(&lines(" a\n     b")), vec!["a", "    b"]);
        // A block at the end is closed.
        assert_eq!(
            from_proto(&lines(" a\n\n     b")),
            vec!["a", "", "```text", "b", "```"]
        );
    }

    #[test]
    fn fences_never_run_as_doctests() {
        assert_eq!(
            from_proto(&lines(" ```\n x[0] <y>\n ```")),
            vec!["```text", "x[0] <y>", "```"]
        );
        assert_eq!(
            from_proto(&lines(" ```rust,ignore\n fn f() {}\n ```")),
            vec!["```text", "fn f() {}", "```"]
        );
        assert_eq!(
            from_proto(&lines(" ```json\n {}\n ```")),
            vec!["```json", "{}", "```"]
        );
        assert_eq!(
            from_proto(&lines(" ~~~\n open")),
            vec!["~~~text", "open", "~~~"]
        );
    }

    #[test]
    fn prose_is_escaped() {
        let table = [
            ("See [RFC 7519].", "See \\[RFC 7519\\]."),
            (
                "A [link](https://x.y) and [ref][r].",
                "A [link](https://x.y) and [ref][r].",
            ),
            (
                "Visit https://example.com/a.",
                "Visit <https://example.com/a>.",
            ),
            (
                "Keep <https://example.com> as is.",
                "Keep <https://example.com> as is.",
            ),
            ("Returns List<Claims>.", "Returns List\\<Claims>."),
            (
                "a < b and `Vec<u8>` and `[x]`",
                "a < b and `Vec<u8>` and `[x]`",
            ),
            ("Already \\[escaped\\].", "Already \\[escaped\\]."),
            ("Unclosed [bracket", "Unclosed [bracket"),
        ];
        for (input, want) in table {
            assert_eq!(escape_prose(input), want, "{input}");
        }
    }

    #[test]
    fn attrs_add_the_leading_space_to_every_line() {
        let tokens = attrs(&["a".to_owned(), String::new(), " b".to_owned()]).to_string();
        assert_eq!(tokens, "# [doc = \" a\"] # [doc = \"\"] # [doc = \"  b\"]");
        assert_eq!(
            for_tonic(&lines(" a\n\n   b")),
            vec![" a".to_owned(), String::new(), "   b".to_owned()]
        );
    }

    #[test]
    fn an_indented_line_after_a_heading_a_rule_or_a_fence_is_code() {
        assert_eq!(
            from_proto(&lines(" # Heading\n      call();")),
            vec!["# Heading", "```text", " call();", "```"]
        );
        assert_eq!(
            from_proto(&lines(" a\n ***\n     call();")),
            vec!["a", "***", "```text", "call();", "```"]
        );
        assert_eq!(
            from_proto(&lines(" ```\n x\n ```\n     call();")),
            vec!["```text", "x", "```", "```text", "call();", "```"]
        );
        // `#hashtag` is not a heading, and a `-` list item is not a rule.
        assert_eq!(from_proto(&lines(" #tag\n     b")), vec!["#tag", "    b"]);
        assert_eq!(from_proto(&lines(" - a\n     b")), vec!["- a", "    b"]);
    }

    #[test]
    fn lazy_continuations_are_made_explicit() {
        assert_eq!(
            from_proto(&lines(" - one\n lazy\n - two\n   kept\n\n after")),
            vec!["- one", "  lazy", "- two", "  kept", "", "after"]
        );
        assert_eq!(
            from_proto(&lines(" 10. ten\n lazy\n * star\n lazy")),
            vec!["10. ten", "    lazy", "* star", "  lazy"]
        );
        assert_eq!(
            from_proto(&lines(" > quote\n lazy\n\n after")),
            vec!["> quote", "> lazy", "", "after"]
        );
        // Not list items: no space after the marker, a number too long, a rule.
        for text in [" -x\n y", " 1234567890. a\n b", " * * *\n b"] {
            let got = from_proto(&lines(text));
            assert!(!got[1].starts_with(' '), "{text:?}: {got:?}");
        }
    }

    #[test]
    fn code_spans_follow_the_paragraph_not_the_line() {
        // A span across two lines is code on both.
        assert_eq!(
            from_proto(&lines(" a `b [x]\n c <d>` [y]")),
            vec!["a `b [x]", "c <d>` \\[y\\]"]
        );
        // A backtick with no partner is text: what follows is still escaped.
        assert_eq!(
            from_proto(&lines(" a ` b [x] <em>")),
            vec!["a ` b \\[x\\] \\<em>"]
        );
        // Runs pair by length.
        assert_eq!(escape_prose("``a ` [b]`` [c]"), "``a ` [b]`` \\[c\\]");
        // An escaped backtick opens nothing.
        assert_eq!(escape_prose("\\` [a] `"), "\\` \\[a\\] `");
        // Paragraphs are apart: a blank line ends a span that was not closed.
        assert_eq!(
            from_proto(&lines(" `a\n\n [b]`")),
            vec!["`a", "", "\\[b\\]`"]
        );
    }

    #[test]
    fn only_ascii_spaces_are_indentation() {
        // A no-break space is text: the line is kept whole.
        assert_eq!(
            from_proto(&lines("  Non-breaking:\n \u{a0} kept")),
            vec![" Non-breaking:", "\u{a0} kept"]
        );
        assert_eq!(
            escape_prose("caf\u{e9} [x] \u{1f600} https://a.b/c\u{e9}."),
            "caf\u{e9} \\[x\\] \u{1f600} <https://a.b/c\u{e9}>."
        );
    }
}
