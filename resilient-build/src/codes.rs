//! gRPC status codes by name, for `retryable_codes`: checked here, rendered as tonic's.

/// One gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Code {
    /// Its number (`14`).
    pub(crate) number: i32,
    /// Its name as in `google.rpc.Code` and the runtime config (`UNAVAILABLE`).
    pub(crate) name: &'static str,
    /// The `tonic::Code` variant (`Unavailable`).
    pub(crate) variant: &'static str,
}

const fn code(number: i32, name: &'static str, variant: &'static str) -> Code {
    Code {
        number,
        name,
        variant,
    }
}

/// Every code, in number order; the names are those `resilient_runtime::config` reads.
pub(crate) const CODES: [Code; 17] = [
    code(0, "OK", "Ok"),
    code(1, "CANCELLED", "Cancelled"),
    code(2, "UNKNOWN", "Unknown"),
    code(3, "INVALID_ARGUMENT", "InvalidArgument"),
    code(4, "DEADLINE_EXCEEDED", "DeadlineExceeded"),
    code(5, "NOT_FOUND", "NotFound"),
    code(6, "ALREADY_EXISTS", "AlreadyExists"),
    code(7, "PERMISSION_DENIED", "PermissionDenied"),
    code(8, "RESOURCE_EXHAUSTED", "ResourceExhausted"),
    code(9, "FAILED_PRECONDITION", "FailedPrecondition"),
    code(10, "ABORTED", "Aborted"),
    code(11, "OUT_OF_RANGE", "OutOfRange"),
    code(12, "UNIMPLEMENTED", "Unimplemented"),
    code(13, "INTERNAL", "Internal"),
    code(14, "UNAVAILABLE", "Unavailable"),
    code(15, "DATA_LOSS", "DataLoss"),
    code(16, "UNAUTHENTICATED", "Unauthenticated"),
];

/// Why a name is not a retryable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadCode {
    /// `OK` is not an error, so there is nothing to retry.
    Ok,
    /// No code has this name; the nearest one.
    Unknown { nearest: &'static str },
}

/// The code named `name`, as the runtime config reads it (case-insensitive, trimmed).
pub(crate) fn retryable(name: &str) -> Result<Code, BadCode> {
    let wanted = name.trim().to_ascii_uppercase();
    match CODES.iter().find(|c| c.name == wanted) {
        Some(c) if c.number == 0 => Err(BadCode::Ok),
        Some(c) => Ok(*c),
        None => Err(BadCode::Unknown {
            nearest: nearest(&wanted),
        }),
    }
}

/// The retryable code whose name contains `wanted` (a shortened name: `DEADLINE`), else
/// the one at the smallest edit distance (a misspelt one: `UNAVAILBLE`).
fn nearest(wanted: &str) -> &'static str {
    let retryable = &CODES[1..];
    if !wanted.is_empty()
        && let Some(c) = retryable.iter().find(|c| c.name.contains(wanted))
    {
        return c.name;
    }
    let names: Vec<String> = retryable.iter().map(|c| c.name.to_owned()).collect();
    let near = crate::policy::nearest(wanted, &names).unwrap_or_default();
    retryable
        .iter()
        .find(|c| c.name == near)
        .map_or("UNAVAILABLE", |c| c.name)
}

/// The codes named by `names`, in number order without repeats; names that are not
/// retryable codes are skipped (validation reports them first).
pub(crate) fn set(names: &[String]) -> Vec<Code> {
    let mut codes: Vec<Code> = names.iter().filter_map(|n| retryable(n).ok()).collect();
    codes.sort();
    codes.dedup();
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        for (name, expected) in [
            ("UNAVAILABLE", Ok(CODES[14])),
            ("unavailable", Ok(CODES[14])),
            (" RESOURCE_EXHAUSTED ", Ok(CODES[8])),
            ("OK", Err(BadCode::Ok)),
            (
                "UNAVAILBLE",
                Err(BadCode::Unknown {
                    nearest: "UNAVAILABLE",
                }),
            ),
            (
                "exhausted",
                Err(BadCode::Unknown {
                    nearest: "RESOURCE_EXHAUSTED",
                }),
            ),
            (
                "CANCELED",
                Err(BadCode::Unknown {
                    nearest: "CANCELLED",
                }),
            ),
            (
                "DEADLINE",
                Err(BadCode::Unknown {
                    nearest: "DEADLINE_EXCEEDED",
                }),
            ),
        ] {
            assert_eq!(retryable(name), expected, "{name}");
        }
        for (i, c) in CODES.iter().enumerate() {
            assert_eq!(c.number, i as i32);
        }
    }

    #[test]
    fn sets_are_sorted_and_deduplicated() {
        let names = ["UNAVAILABLE", "aborted", "UNAVAILABLE", "nope"].map(String::from);
        let numbers: Vec<i32> = set(&names).iter().map(|c| c.number).collect();
        assert_eq!(numbers, [10, 14]);
    }
}
