//! The one rule every name in the engine follows: types, functions, overlay tables, cache tags.
//!
//! A name is non-empty, at most [`MAX_NAME_LEN`] bytes, and has no whitespace, no control
//! characters and none of `{ } ( ) , :` (the characters types and signatures are written with).
//! Type names additionally may not be `Any`, `Bottom`, `Union` or `Tuple`.

/// The longest name accepted, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 1024;

/// Whether `name` follows the rule for every name.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "{}(),:".contains(c))
}

/// Whether `name` can name a declared type.
pub(crate) fn is_valid_type_name(name: &str) -> bool {
    is_valid_name(name) && !matches!(name, "Any" | "Bottom" | "Union" | "Tuple")
}

/// `name` as an error message quotes it: cut to a readable length.
pub(crate) fn shorten(name: &str) -> String {
    const SHOWN: usize = 64;
    match name.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}… ({} bytes)", &name[..cut], name.len()),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{is_valid_name, is_valid_type_name, shorten, MAX_NAME_LEN};

    #[test]
    fn one_rule_for_every_name() {
        for good in ["f", "getindex", "+", "==", "Base.show", "λ", "Int64"] {
            assert!(is_valid_name(good), "{good:?}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "", " f", "f g", "f\n", "a\0b", "f(", "Tuple{", "a,b", "a:b", &long,
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        assert!(is_valid_name("Any") && !is_valid_type_name("Any"));
        assert!(shorten(&long).len() < 100);
    }
}
