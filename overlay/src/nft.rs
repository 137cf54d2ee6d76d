//! nftables text the data plane's rulesets share ([`crate::lb`], [`crate::mesh`],
//! [`crate::tunnel`]): each ruleset is one `nft -f` run, so it is replaced atomically.

use std::fmt::Write;
use std::net::Ipv4Addr;

/// Start `table` over: made if missing (so the delete never fails), then deleted; the
/// caller writes it anew after.
pub(crate) fn replace_table(out: &mut String, table: &str) {
    let _ = writeln!(out, "table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
}

/// Open the base chain `name` of type `kind` on `hook` at `priority` (accepting by
/// default); [`close_chain`] ends it.
pub(crate) fn open_chain(out: &mut String, name: &str, kind: &str, hook: &str, priority: i32) {
    let _ = writeln!(out, "  chain {name} {{");
    let _ = writeln!(
        out,
        "    type {kind} hook {hook} priority {priority}; policy accept;"
    );
}

pub(crate) fn close_chain(out: &mut String) {
    let _ = writeln!(out, "  }}");
}

/// `numgen inc mod N map { 0 : a, 1 : b }`: one of `backends` per new connection, in turn.
pub(crate) fn spread(backends: &[Ipv4Addr]) -> String {
    let map: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{i} : {b}"))
        .collect();
    format!(
        "numgen inc mod {} map {{ {} }}",
        backends.len(),
        map.join(", ")
    )
}
