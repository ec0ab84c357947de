//! Rust names for wire names.

/// Rust keywords (strict and reserved) that a field or parameter name must not be.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// `capacityInKB` -> `capacity_in_kb`, `IPAddress` -> `ip_address`, `PowerOnVM_Task` ->
/// `power_on_vm_task`; keywords get a trailing underscore.
pub(crate) fn snake(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None | Some('_') => false,
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_owned();
    let out = if out.is_empty() {
        "value".to_owned()
    } else {
        out
    };
    let out = if out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("n{out}")
    } else {
        out
    };
    if KEYWORDS.contains(&out.as_str()) {
        format!("{out}_")
    } else {
        out
    }
}

/// `snake` in upper case, for statics.
pub(crate) fn screaming(s: &str) -> String {
    snake(s).trim_end_matches('_').to_ascii_uppercase()
}

/// `poweredOff` -> `PoweredOff`, `independent_persistent` -> `IndependentPersistent`,
/// `3des` -> `V3des`.
pub(crate) fn variant(s: &str) -> String {
    let mut out = String::new();
    for part in s.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut cs = part.chars();
        if let Some(c) = cs.next() {
            out.push(c.to_ascii_uppercase());
            out.extend(cs);
        }
    }
    if out.is_empty() {
        return "Empty".to_owned();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    if matches!(out.as_str(), "Self" | "Other") {
        out.push_str("Value");
    }
    out
}

/// Makes `name` unique among `taken` by appending a number.
pub(crate) fn unique(name: &str, taken: &mut Vec<String>) -> String {
    let mut n = name.to_owned();
    let mut i = 2;
    while taken.contains(&n) {
        n = format!("{name}{i}");
        i += 1;
    }
    taken.push(n.clone());
    n
}

#[cfg(test)]
mod tests {
    use super::{snake, variant};

    #[test]
    fn snake_cases_vim_names() {
        for (wire, rust) in [
            ("capacityInKB", "capacity_in_kb"),
            ("IPAddress", "ip_address"),
            ("vDiskId", "v_disk_id"),
            ("numCPU", "num_cpu"),
            ("memoryMB", "memory_mb"),
            ("PowerOnVM_Task", "power_on_vm_task"),
            ("ipv6Enabled", "ipv6_enabled"),
            ("type", "type_"),
            ("self", "self_"),
            ("_this", "this"),
        ] {
            assert_eq!(snake(wire), rust, "{wire}");
        }
    }

    #[test]
    fn variants_are_camel_case_identifiers() {
        for (wire, rust) in [
            ("poweredOff", "PoweredOff"),
            ("independent_persistent", "IndependentPersistent"),
            ("3des", "V3des"),
            ("other", "OtherValue"),
            ("", "Empty"),
            ("vmxnet3", "Vmxnet3"),
        ] {
            assert_eq!(variant(wire), rust, "{wire}");
        }
    }
}
