//! Reporting bad objects on the object itself, so `kubectl get gw -o yaml` shows why a
//! Gateway is not (fully) elected.
//!
//! Where a condition would go: OpenYurt's Gateway status has no `conditions` (only `nodes` and
//! `activeEndpoints`), and our CRD keeps that schema for wire compatibility, so the API server
//! would prune a condition we wrote. The defects therefore go into the annotation
//! [`ANNOTATION_PROBLEMS`] (present while the Gateway has defects, removed when they are
//! fixed), next to a Warning Event on each change and a log line. Annotations are metadata any
//! client may carry; agents and upstream controllers ignore unknown ones.

use serde_json::{Value, json};

/// Annotation holding a Gateway's current defects, joined by `"; "` (absent: none).
pub const ANNOTATION_PROBLEMS: &str = "raven.openyurt.io/problems";

/// Separator of the problems in [`ANNOTATION_PROBLEMS`] and in the Event message.
pub const PROBLEM_SEPARATOR: &str = "; ";

/// The merge patch that makes the stored annotation (`stored`) say `problems`, or `None`
/// when it already does (no write). No problems removes the annotation.
pub fn problems_patch(stored: Option<&str>, problems: &[String]) -> Option<Value> {
    let want = (!problems.is_empty()).then(|| problems.join(PROBLEM_SEPARATOR));
    if stored == want.as_deref() {
        return None;
    }
    Some(json!({"metadata": {"annotations": {ANNOTATION_PROBLEMS: want}}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_patch_table() {
        let p = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let set = |v: &str| Some(json!({"metadata": {"annotations": {ANNOTATION_PROBLEMS: v}}}));
        let clear = Some(json!({"metadata": {"annotations": {ANNOTATION_PROBLEMS: null}}}));
        let cases: Vec<(Option<&str>, Vec<String>, Option<Value>)> = vec![
            (None, p(&[]), None),
            (None, p(&["bad type"]), set("bad type")),
            (Some("bad type"), p(&["bad type"]), None),
            (
                Some("bad type"),
                p(&["bad type", "bad cidr"]),
                set("bad type; bad cidr"),
            ),
            (Some("bad type; bad cidr"), p(&[]), clear.clone()),
            // Someone blanked it by hand: it is restored, and an empty value counts as set.
            (Some(""), p(&["x"]), set("x")),
            (Some(""), p(&[]), clear),
        ];
        for (stored, problems, want) in cases {
            assert_eq!(
                problems_patch(stored, &problems),
                want,
                "{stored:?} {problems:?}"
            );
        }
    }
}
