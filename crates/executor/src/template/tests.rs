//! Kala's template cases and the limits that keep templates bounded.
use super::*;

fn job(delims: &str) -> Job {
    let mut j = Job::new("mock_job", "echo");
    j.owner = "mr.jedi@master.com".into();
    j.template_delimiters = delims.into();
    j
}

#[test]
fn kala_template_cases() {
    assert_eq!(
        render("echo mr.{{$.Owner}}", &job("")).unwrap(),
        "echo mr.{{$.Owner}}"
    );
    assert_eq!(
        render("echo {{$.Owner}}", &job("{{ }}")).unwrap(),
        "echo mr.jedi@master.com"
    );
    assert_eq!(
        render("http://x/?val=a_{{$.Name}}", &job("{{ }}")).unwrap(),
        "http://x/?val=a_mock_job"
    );
    let mut j = job("${ }");
    j.owner = "young-jedi@master.com".into();
    assert_eq!(
        render(r#"{"owner": "${.Owner}"}"#, &j).unwrap(),
        r#"{"owner": "young-jedi@master.com"}"#
    );
    assert_eq!(
        render("{{ keep }} ${.Name}", &j).unwrap(),
        "{{ keep }} mock_job"
    );
    assert_eq!(
        render(
            "n={{.Metadata.SuccessCount}} t={{.Metadata.LastSuccess}}",
            &job("{{ }}")
        )
        .unwrap(),
        "n=0 t=0001-01-01 00:00:00 +0000 UTC"
    );
    assert_eq!(
        render("{{if .Disabled}}off{{else}}on{{end}}", &job("{{ }}")).unwrap(),
        "on"
    );
}

#[test]
fn templates_that_could_recurse_or_explode_are_refused() {
    let refused = [
        (
            r#"{{define "a"}}{{template "a"}}{{end}}{{template "a"}}"#,
            "define",
        ),
        (r#"{{template "x"}}"#, "template"),
        (r#"{{- block "b" .}}x{{end}}"#, "block"),
        (r#"{{printf "%70000d" 1}}"#, "format width"),
        (r#"{{printf "%.5000f" 1.0}}"#, "format width"),
        (
            "{{range .DependentJobs}}{{range .}}x{{end}}{{end}}",
            "range inside a range",
        ),
        ("{{.Name", "missing"),
    ];
    for (t, why) in refused {
        let e = check(t, "{{ }}").unwrap_err();
        assert!(e.contains(why), "{t}: {e}");
        // A stored job that predates the check fails its run the same way.
        let r = render(t, &job("{{ }}")).unwrap_err();
        assert!(r.contains(why), "{t}: {r}");
    }
    let deep_parens = format!("{{{{{}1{}}}}}", "(".repeat(100), ")".repeat(100));
    assert!(
        check(&deep_parens, "{{ }}")
            .unwrap_err()
            .contains("parentheses nest")
    );
    let deep_ifs = format!("{}x{}", "{{if 1}}".repeat(100), "{{end}}".repeat(100));
    assert!(
        check(&deep_ifs, "{{ }}")
            .unwrap_err()
            .contains("blocks nest")
    );
    let long = "x".repeat(MAX_TEMPLATE_BYTES + 1);
    assert!(check(&long, "{{ }}").unwrap_err().contains("longer than"));
    // What people write is fine; so is anything without delimiters.
    for ok in [
        "echo {{.Name}} {{printf \"%05d\" 7}} {{/* it's fine */}}",
        "{{if .Disabled}}off{{else if .Owner}}{{.Owner}}{{end}}",
        "{{range .DependentJobs}}{{.}} {{end}}{{\"}}\"}}",
        "{{ (len (printf \"%s\" .Name)) }}",
    ] {
        check(ok, "{{ }}").unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    check(r#"{{define "a"}}"#, "").unwrap();
    // Found by fuzzing: gtmpl's lexer looped for ever on this.
    let hang = "echo`z{.Namem} {{print \"=\\\\f\\x \"%.0=\nd}}";
    assert!(check(hang, "{{ }}").unwrap_err().contains("escape"));
    let hang = r#"{{print `raw \x`}}"#;
    assert!(check(hang, "{{ }}").unwrap_err().contains("raw"));
    for ok in [r#"{{printf "\t\\ \"q\""}}"#, r#"{{print `raw x`}}"#] {
        check(ok, "{{ }}").unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // Found by fuzzing: gtmpl's lexer panicked on this.
    let crash = "echo K{{\u{4b7}ame}} {{.0..ntf \"%04d\" 7}} {{.0..Disabled\u{2cc}}x{{e=d}}";
    assert!(check(crash, "{{ }}").is_err());
    assert!(render(crash, &job("{{ }}")).is_err());
    assert_eq!(render("<<.Name>>", &job("<< >>")).unwrap(), "mock_job");
}

#[test]
fn bad_templates_fail_the_run() {
    assert!(
        render("{{.Name", &job("{{ }}"))
            .unwrap_err()
            .contains("Error templatizing")
    );
    assert!(
        render("x", &job("{{}}"))
            .unwrap_err()
            .contains("invalid templating delimiters")
    );
    assert!(render("${.Name", &job("${ }")).is_err());
}

#[test]
fn go_time_format() {
    let t: Timestamp = "2026-11-22T15:23:44.516371803Z".parse().unwrap();
    assert_eq!(go_time(Some(t)), "2026-11-22 15:23:44.516371803 +0000 UTC");
}

/// What is rendered in place and what on a blocking thread: a short
/// template over a small job is cheap; a `range`, a template whose
/// actions could each print a large field, or many actions are not.
#[test]
fn only_small_bounded_templates_render_in_place() {
    let j = job("{{ }}");
    assert!(renders_quickly(
        "echo {{.Name}} {{.Owner}}",
        "{{ }}",
        &j,
        None
    ));
    assert!(renders_quickly("no template at all", "", &j, None));
    assert!(!renders_quickly(
        "{{range .ParentJobs}}{{.}}{{end}}",
        "{{ }}",
        &j,
        None
    ));
    let mut big = job("{{ }}");
    big.command = "x".repeat(64 * 1024);
    assert!(renders_quickly("{{.Command}}", "{{ }}", &big, None));
    assert!(
        !renders_quickly(&"{{.Command}}".repeat(8), "{{ }}", &big, None),
        "eight copies of a 64 KiB field could be 512 KiB"
    );
    assert!(!renders_quickly(
        &"{{printf \"%999s\" .Name}}".repeat(300),
        "{{ }}",
        &j,
        None
    ));
    // Either way the text is the same.
    let t = "echo {{.Name}}-{{.Owner}}";
    assert_eq!(
        render_delimited(t, "{{ }}", &j, None).unwrap(),
        "echo mock_job-mr.jedi@master.com"
    );
}

#[test]
fn parsed_templates_are_reused_per_text_and_delimiters() {
    let mut a = job("{{ }}");
    a.name = "first".into();
    let mut b = job("{{ }}");
    b.name = "second".into();
    let t = "echo {{.Name}} <<.Name>>";
    // The same text with the same delimiters: parsed once, each job's data.
    assert_eq!(render(t, &a).unwrap(), "echo first <<.Name>>");
    assert_eq!(render(t, &b).unwrap(), "echo second <<.Name>>");
    assert!(std::sync::Arc::ptr_eq(
        &parsed(t, "{{ }}").unwrap(),
        &parsed(t, "{{ }}").unwrap()
    ));
    // Other delimiters: another template.
    b.template_delimiters = "<< >>".into();
    assert_eq!(render(t, &b).unwrap(), "echo {{.Name}} second");
    // A template that does not parse fails every time; nothing is kept.
    for _ in 0..2 {
        let e = render("echo {{.Name", &a).unwrap_err();
        assert!(e.contains("Error templatizing"), "{e}");
    }
    // Limits still hold for a template never seen before.
    let deep = format!("{}x{}", "{{if 1}}".repeat(40), "{{end}}".repeat(40));
    assert!(render(&deep, &a).is_err());
}
