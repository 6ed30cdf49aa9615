//! The interpreter alone, with the in-process host (`LocalHost`): no Temporal, no I/O.
//!
//! - a 100-task workflow of `set` and `switch` tasks (50 of each, every `switch` jumping to the
//!   next `set` by name), run to its output (and a 10-task one, to see whether a task's cost
//!   depends on the workflow's size);
//! - a `for` over 1,000 items, each iteration a `set` that adds the item to a running sum (and
//!   over 2,000, to see whether an iteration's cost depends on the item count);
//! - `Workflow::from_document` (normalise, validate, read) of the 100-task document;
//! - one jq expression: compile (`Expr::compile`), and evaluation (`Expr::eval`) with small
//!   globals and with `$workflow` holding the 100-task definition (the interpreter passes the
//!   whole definition as `$workflow.definition` to every evaluation).
//!
//! Each figure is the median and p99 over `RUNS` timed runs (default 200; the 1,000-item loop
//! runs `RUNS / 4`, the same over 2,000 items `RUNS / 8`) after `RUNS / 10` warm-up runs.
//!
//! `cargo bench -p stigmer-workflow --bench interp`

use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime};
use stigmer_workflow::expr::{Determinism, Expr};
use stigmer_workflow::local::LocalHost;
use stigmer_workflow::secrets::Secrets;
use stigmer_workflow::{Run, Workflow};

/// A document of `2 × pairs` tasks: `set` then `switch`, `pairs` times; each `set` counts,
/// each `switch` tests the count (never true) and jumps to the next `set` by name.
fn set_switch(pairs: usize) -> Value {
    let mut tasks = Vec::new();
    for i in 0..pairs {
        tasks.push(json!({ format!("set{i}"): {
            "set": {
                "n": "${ (.n // 0) + 1 }",
                "label": format!("${{ \"step \" + ((.n // 0) | tostring) }}"),
            }
        }}));
        let next = if i == pairs - 1 {
            "end".to_owned()
        } else {
            format!("set{}", i + 1)
        };
        tasks.push(json!({ format!("switch{i}"): {
            "switch": [
                { "tooMany": { "when": ".n > 1000", "then": "end" } },
                { "onward": { "then": next } },
            ]
        }}));
    }
    document(Value::Array(tasks))
}

/// `for` over `.items`, each iteration a `set` adding the item to `.sum`.
fn loop_over_items() -> Value {
    document(json!([
        { "loop": {
            "for": { "each": "item", "in": ".items" },
            "do": [
                { "add": { "set": { "sum": "${ (.sum // 0) + $item }" } } }
            ]
        }}
    ]))
}

fn document(tasks: Value) -> Value {
    json!({
        "document": {"dsl": "1.0.3", "namespace": "default", "name": "bench", "version": "1.0.0"},
        "do": tasks,
    })
}

fn workflow(document: Value) -> Workflow {
    match Workflow::from_document(document) {
        Ok(workflow) => workflow,
        Err(problems) => panic!("invalid workflow: {problems:?}"),
    }
}

/// Median and p99 (ms) of `runs` timed calls of `once` after `warm` untimed ones.
fn measure(warm: usize, runs: usize, mut once: impl FnMut() -> Duration) -> (f64, f64) {
    for _ in 0..warm {
        once();
    }
    let mut values: Vec<f64> = (0..runs).map(|_| once().as_secs_f64() * 1000.0).collect();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at =
        |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
    (at(0.5), at(0.99))
}

fn print(name: &str, (median, p99): (f64, f64), per: Option<(f64, &str)>) {
    let per = per
        .map(|(count, unit)| format!(" (median {:.2} µs per {unit})", median * 1000.0 / count))
        .unwrap_or_default();
    if median < 0.1 {
        println!(
            "  {name}: median {:.2} µs, p99 {:.2} µs{per}",
            median * 1000.0,
            p99 * 1000.0
        );
    } else {
        println!("  {name}: median {median:.3} ms, p99 {p99:.3} ms{per}");
    }
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(200);
    let warm = (runs / 10).max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host = LocalHost::new(Secrets::default());
    let run_to_end = |workflow: &Workflow, input: &Value, expected: &Value| {
        let started = Instant::now();
        let output = runtime
            .block_on(stigmer_workflow::run(
                workflow,
                &host,
                Run {
                    execution_id: "wex-bench".into(),
                    input: input.clone(),
                    secret_names: Vec::new(),
                },
            ))
            .expect("the workflow completes");
        let elapsed = started.elapsed();
        assert_eq!(&output, expected);
        elapsed
    };

    println!(
        "interpreter (LocalHost): {runs} runs after {warm} warm-up runs (the loops: a quarter, an eighth)"
    );

    let document = set_switch(50);
    let parsed = measure(warm, runs, || {
        let started = Instant::now();
        std::hint::black_box(workflow(document.clone()));
        started.elapsed()
    });
    print("Workflow::from_document, 100-task document", parsed, None);

    // 10 and 100 tasks: a per-task cost that grows with the workflow's size is work
    // proportional to the definition done for every task.
    for pairs in [5, 50] {
        let tasks = workflow(set_switch(pairs));
        let expected = json!({"n": pairs, "label": format!("step {}", pairs - 1)});
        let timed = measure(warm, runs, || run_to_end(&tasks, &json!({}), &expected));
        print(
            &format!("{}-task set/switch workflow, run to its output", pairs * 2),
            timed,
            Some(((pairs * 2) as f64, "task")),
        );
    }

    // The loop at two sizes: a per-iteration cost that grows with the item count is work
    // proportional to the input done in every iteration.
    let looped = workflow(loop_over_items());
    for count in [1000_u64, 2000] {
        let items: Vec<u64> = (1..=count).collect();
        let input = json!({ "items": items });
        let expected = json!({"sum": count * (count + 1) / 2});
        let loop_runs = (runs * 1000 / 4 / count as usize).max(5);
        let timed = measure((loop_runs / 10).max(1), loop_runs, || {
            run_to_end(&looped, &input, &expected)
        });
        print(
            &format!("for over {count} items (a set each), run to its output"),
            timed,
            Some((count as f64, "iteration")),
        );
    }

    // Expressions: many per timed sample (one is well under a microsecond or two).
    let text = r#"{ total: ((.sum // 0) + $item), label: ("item " + ($item | tostring)), big: (.values | map(select(. > 2)) | length) }"#;
    let batch = 1000;
    let compiled = measure(warm, runs, || {
        let started = Instant::now();
        for _ in 0..batch {
            std::hint::black_box(Expr::compile(text, &["$item"]).expect("compiles"));
        }
        started.elapsed() / batch
    });
    print("Expr::compile of one expression", compiled, None);

    let expr = Expr::compile(text, &["$item"]).expect("compiles");
    let env = Determinism {
        now: SystemTime::now(),
        uuid: "00000000-0000-4000-8000-000000000000".into(),
    };
    let input = json!({"sum": 41, "values": [1, 2, 3, 4, 5]});
    let small: [Value; 8] = [
        json!({}),
        json!({}),
        Value::Null,
        json!({}),
        json!({"name": "add", "reference": "/do/0/loop/for/do/0/add"}),
        json!({"id": "wex-bench", "definition": {}, "input": {}}),
        json!({"name": "stigmer", "version": "0"}),
        Value::Null,
    ];
    let mut with_definition = small.clone();
    with_definition[5] = json!({"id": "wex-bench", "definition": document, "input": {}});
    let expected = json!({"total": 42, "label": "item 1", "big": 3});
    for (name, globals) in [
        ("Expr::eval, small globals", &small),
        (
            "Expr::eval, $workflow.definition = the 100-task document",
            &with_definition,
        ),
    ] {
        let evaluated = measure(warm, runs, || {
            let started = Instant::now();
            for _ in 0..batch {
                let value = expr
                    .eval(&input, globals, &[json!(1)], &env)
                    .expect("evaluates");
                debug_assert_eq!(value, expected);
                std::hint::black_box(value);
            }
            started.elapsed() / batch
        });
        print(name, evaluated, None);
    }
}
