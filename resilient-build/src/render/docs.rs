//! Proto comments to rustdoc: `#[doc]` attributes that render as written and never
//! become doctests or broken links.

use proc_macro2::TokenStream;
use quote::quote;

/// `#[doc = "..."]` attributes, one per line.
pub(crate) fn attrs(lines: &[String]) -> TokenStream {
    let lines = lines.iter().map(|line| {
        if line.is_empty() || line.starts_with(' ') {
            line.clone()
        } else {
            format!(" {line}")
        }
    });
    quote! { #( #[doc = #lines] )* }
}

/// Proto comment lines (as the source info holds them) to markdown that rustdoc shows
/// as the author meant it:
///
/// - the common indentation is removed (`// text` gives ` text`);
/// - an indented block becomes a fenced `text` block, and a fenced block without a
///   language (or marked `rust`) becomes `text`, so rustdoc never compiles proto
///   examples as doctests;
/// - outside code, `[x]` that is not a link is escaped, bare URLs become autolinks and
///   `<tag` is escaped, so rustdoc reports no broken links or unclosed HTML.
pub(crate) fn from_proto(comments: &[String]) -> Vec<String> {
    let expanded: Vec<String> = comments
        .iter()
        .map(|line| line.replace('\t', "    ").trim_end().to_owned())
        .collect();
    let indent = expanded
        .iter()
        .filter(|line| !line.is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
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
    let lines = &lines[start..end];

    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    let mut indented = false;
    let mut previous_blank = true;
    for (i, line) in lines.iter().enumerate() {
        if let Some(marker) = &fence {
            if line.trim_start().starts_with(marker.as_str()) {
                fence = None;
            }
            out.push((*line).to_owned());
            previous_blank = false;
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
                    out.push(String::new());
                    continue;
                }
            } else if is_indented(line) {
                out.push(line[4..].to_owned());
                continue;
            }
            out.push("```".to_owned());
            indented = false;
        }
        let trimmed = line.trim_start();
        if let Some(marker) = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m)) {
            let info = trimmed.trim_start_matches(marker.chars().next().unwrap_or('`'));
            let prefix = &line[..line.len() - trimmed.len()];
            let run = trimmed.len() - info.len();
            fence = Some(trimmed[..run].to_owned());
            out.push(format!(
                "{prefix}{}{}",
                &trimmed[..run],
                fence_info(info.trim())
            ));
            previous_blank = false;
            continue;
        }
        if previous_blank && is_indented(line) {
            out.push("```text".to_owned());
            out.push(line[4..].to_owned());
            indented = true;
            continue;
        }
        out.push(escape_prose(line));
        previous_blank = line.is_empty();
    }
    if indented || fence.is_some() {
        out.push(fence.unwrap_or_else(|| "```".to_owned()));
    }
    out
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

/// Escapes one line of prose, leaving inline code spans alone.
fn escape_prose(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    for (i, part) in line.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(part);
        } else {
            out.push_str(&escape_text(part));
        }
    }
    out
}

fn escape_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest: String = chars[i..].iter().collect();
        let escaped = i > 0 && chars[i - 1] == '\\';
        if c == '<' && !escaped {
            if let Some(len) = autolink_len(&rest) {
                out.push_str(&rest[..len]);
                i += rest[..len].chars().count();
                continue;
            }
            if chars
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '/' || *n == '!')
            {
                out.push_str("\\<");
                i += 1;
                continue;
            }
        }
        if (rest.starts_with("http://") || rest.starts_with("https://"))
            && (i == 0 || !matches!(chars[i - 1], '<' | '(' | '"'))
        {
            let len = rest
                .find(|ch: char| ch.is_whitespace() || matches!(ch, ')' | '>' | '"'))
                .unwrap_or(rest.len());
            let url = rest[..len].trim_end_matches(['.', ',', ';', ':']);
            out.push('<');
            out.push_str(url);
            out.push('>');
            i += url.chars().count();
            continue;
        }
        if c == '['
            && !escaped
            && !(i > 0 && chars[i - 1] == ']')
            && let Some(close) = chars[i + 1..].iter().position(|&ch| ch == ']')
        {
            let close = i + 1 + close;
            let is_link = matches!(chars.get(close + 1), Some('(' | '['));
            if !is_link {
                out.push_str("\\[");
                out.extend(&chars[i + 1..close]);
                out.push_str("\\]");
                i = close + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
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
    fn attrs_add_the_leading_space() {
        let tokens = attrs(&["a".to_owned(), String::new(), " b".to_owned()]).to_string();
        assert_eq!(tokens, "# [doc = \" a\"] # [doc = \"\"] # [doc = \" b\"]");
    }
}
