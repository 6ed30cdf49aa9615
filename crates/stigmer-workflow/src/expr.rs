//! Runtime expressions: jq through the `jaq` crates, made safe for workflow code.
//!
//! A workflow expression is plain jq with the workflow's global variables (`GLOBALS`) and the
//! scope's own variables (`$item`, `$index`, `$error`…). On top of jq as jaq implements it:
//!
//! * **Refused natives.** `env`, `halt`, `halt_error`, `localtime`, `strflocaltime`, `input`
//!   and `inputs` leak the worker's environment, read stdin or the local clock, or exit the
//!   process; they are replaced (not removed: the standard definitions call them) by natives
//!   that fail with "… is not available in workflow expressions". `debug` and `stderr` are the
//!   identity: they never write to the worker's stderr or logs (secrets could be in the value).
//! * **Determinism.** `now` is the workflow time and `uuid` the workflow's uuid, both read from
//!   the [`Determinism`] given to each evaluation (the natives read the per-evaluation data that
//!   jaq hands to every native), so a replay computes the same values.
//! * **No `def`.** A user recursion overflows the stack and aborts the worker, so the keyword
//!   `def` is refused at compile time (checked on jq tokens, so `"def"` in a string is fine).
//! * **A budget.** jaq has no fuel. The generators that can run forever (`range`, `repeat`,
//!   `recurse`, `while`, `until`, `combinations`) count every step against a per-evaluation
//!   budget of [`MAX_STEPS`]; the looping ones also refuse a string grown beyond [`MAX_VALUE_LEN`]
//!   (a string doubling loop). The count is deterministic; a wall-clock check
//!   ([`MAX_EVAL_TIME`], consulted every few thousand steps) is only a last resort. Results are
//!   capped in number ([`MAX_OUTPUTS`]) and size ([`MAX_RESULT_SIZE`]). Exceeding the budget is
//!   not catchable by `try`.
//!
//! Measured (release, this machine): compiling `.a + 1` about 350 µs (most of it compiling the
//! standard definitions, whose parse is cached), evaluating it about 4 µs.

use jaq_core::box_iter::box_once;
use jaq_core::data::HasLut;
use jaq_core::load::lex::{StrPart, Tok, Token};
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::native::{Fun, v};
use jaq_core::{Compiler, Ctx, Cv, DataT, Error, Exn, ValXs, Vars};
use jaq_json::{Num, Val};
use regex::Regex;
use serde_json::Value;
use std::cell::Cell;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The global variables every expression may use, in this order (values missing in a given
/// place are passed as null).
pub const GLOBALS: [&str; 8] = [
    "$context",
    "$input",
    "$output",
    "$secrets",
    "$task",
    "$workflow",
    "$runtime",
    "$authorization",
];

/// Steps (generator outputs and loop iterations) one evaluation may take.
pub const MAX_STEPS: u64 = 250_000;
/// Results [`Expr::eval_all`] collects before it fails.
pub const MAX_OUTPUTS: usize = 10_000;
/// Longest string (bytes) a loop may carry from one iteration to the next.
pub const MAX_VALUE_LEN: usize = 16 * 1024 * 1024;
/// Largest result of one evaluation, counted as string bytes plus 8 per value.
pub const MAX_RESULT_SIZE: usize = 64 * 1024 * 1024;
/// The last-resort wall-clock limit of one evaluation.
pub const MAX_EVAL_TIME: Duration = Duration::from_secs(5);
/// Deepest nesting accepted in an expression's text and in a result.
const MAX_DEPTH: usize = 256;
/// Longest error message we pass on (an error may quote a large value).
const MAX_MESSAGE_LEN: usize = 1000;
/// The halt code our budget natives raise: an exception `try` cannot catch. User code cannot
/// raise a halt (`halt` is refused).
const BUDGET_HALT: i32 = i32::MIN + 7;

static STRICT_EXPRESSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)^\s*\$\{(.+)\}\s*$").expect("valid regex"));

static SECRET_REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"\$secrets\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\.?\s*\[\s*"((?:[^"\\]|\\.)*)"\s*\]|\.\s*"((?:[^"\\]|\\.)*)")"#,
    )
    .expect("valid regex")
});

/// `Some(inner jq text)` when the whole string is a runtime expression `${ … }` (strict mode:
/// `^\s*\$\{(.+)\}\s*$`, dot matches newlines), else None.
pub fn unwrap(text: &str) -> Option<&str> {
    let inner = STRICT_EXPRESSION.captures(text)?.get(1)?;
    Some(&text[inner.range()])
}

/// Names of the secrets an expression text refers to statically (`$secrets.NAME`,
/// `$secrets["NAME"]`, `$secrets."NAME"`), in order of first mention, without duplicates.
pub fn secret_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for captures in SECRET_REFERENCE.captures_iter(text) {
        let name = (1..=3).find_map(|i| captures.get(i)).map(|m| m.as_str());
        if let Some(name) = name
            && !names.iter().any(|known| known == name)
        {
            names.push(name.to_string());
        }
    }
    names
}

/// What an expression may not do, as a compile error: `def`, unknown variables, syntax errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub message: String,
}

/// A failed evaluation; the message says what failed and why, for the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    fn new(message: impl Into<String>) -> EvalError {
        EvalError {
            message: message.into(),
        }
    }
}

/// The per-evaluation deterministic inputs: workflow time and a uuid, from the workflow context.
#[derive(Clone, Debug)]
pub struct Determinism {
    pub now: SystemTime,
    pub uuid: String,
}

/// The jaq data kind of our filters: natives see the per-evaluation [`Run`].
struct Workflow;

impl DataT for Workflow {
    type V<'a> = Val;
    type Data<'a> = &'a Run<'a>;
}

/// What one evaluation's natives share: the workflow's time and uuid and the budget spent.
struct Run<'a> {
    lut: &'a jaq_core::Lut<Workflow>,
    now: f64,
    uuid: &'a str,
    steps: Cell<u64>,
    started: Instant,
    /// Why the budget ran out, once it has: sticky, so an exhausted budget fails the
    /// evaluation even when an operator like `//` swallowed the error.
    exceeded: Cell<Option<&'static str>>,
}

impl<'a> HasLut<'a, Workflow> for &'a Run<'a> {
    fn lut(&self) -> &'a jaq_core::Lut<Workflow> {
        self.lut
    }
}

impl Run<'_> {
    /// Counts one step; fails when the budget is spent.
    fn tick<'e, V>(&self) -> Result<(), Exn<'e, V>> {
        if self.exceeded.get().is_some() {
            return Err(Exn::halt(BUDGET_HALT));
        }
        let steps = self.steps.get() + 1;
        self.steps.set(steps);
        if steps > MAX_STEPS {
            return self.exceed("the expression exceeded its budget of 250000 steps");
        }
        if steps.is_multiple_of(4096) && self.started.elapsed() > MAX_EVAL_TIME {
            return self.exceed("the expression ran for more than 5 seconds");
        }
        Ok(())
    }

    /// Counts one loop iteration carrying a string of `len` bytes; fails when it has grown
    /// too large.
    fn tick_len<'e, V>(&self, len: usize) -> Result<(), Exn<'e, V>> {
        self.tick()?;
        if len > MAX_VALUE_LEN {
            return self.exceed("the expression built a value larger than 16 MiB");
        }
        Ok(())
    }

    fn exceed<'e, V>(&self, why: &'static str) -> Result<(), Exn<'e, V>> {
        self.exceeded.set(Some(why));
        Err(Exn::halt(BUDGET_HALT))
    }
}

type Filter = jaq_core::Filter<Workflow>;

/// A compiled jq filter, cheap to clone and share.
#[derive(Clone)]
pub struct Expr {
    text: Arc<str>,
    filter: Arc<Filter>,
    extra: usize,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr").field("text", &self.text).finish()
    }
}

impl Expr {
    /// Compiles plain jq text (no `${ }`). `extra` are the scope's own variables (e.g.
    /// "$item", "$index", "$error"), each including the `$`.
    pub fn compile(text: &str, extra: &[&str]) -> Result<Expr, CompileError> {
        for name in extra {
            let ident = name.strip_prefix('$').unwrap_or("");
            if ident.is_empty() || !ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(compile_error(format!("invalid variable name {name:?}")));
            }
        }
        check_nesting(text)?;
        check_no_def(text)?;
        let filter = build(text, extra)?;
        Ok(Expr {
            text: Arc::from(text),
            filter: Arc::new(filter),
            extra: extra.len(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first output of the filter on `input` (null when it yields nothing).
    /// `globals` in [`GLOBALS`] order, `extra` in the order given at compile time.
    pub fn eval(
        &self,
        input: &Value,
        globals: &[Value; 8],
        extra: &[Value],
        env: &Determinism,
    ) -> Result<Value, EvalError> {
        let mut outputs = self.run(input, globals, extra, env, 1)?;
        Ok(outputs.pop().unwrap_or(Value::Null))
    }

    /// Every output, for the few places that need a stream (at most [`MAX_OUTPUTS`]).
    pub fn eval_all(
        &self,
        input: &Value,
        globals: &[Value; 8],
        extra: &[Value],
        env: &Determinism,
    ) -> Result<Vec<Value>, EvalError> {
        self.run(input, globals, extra, env, MAX_OUTPUTS + 1)
    }

    fn run(
        &self,
        input: &Value,
        globals: &[Value; 8],
        extra: &[Value],
        env: &Determinism,
        wanted: usize,
    ) -> Result<Vec<Value>, EvalError> {
        if extra.len() != self.extra {
            return Err(EvalError::new(format!(
                "internal error: expression `{}` takes {} scope variables, got {}",
                self.text,
                self.extra,
                extra.len()
            )));
        }
        let vars: Vec<Val> = globals.iter().chain(extra).map(to_val).collect();
        let run = Run {
            lut: &self.filter.lut,
            now: seconds_since_epoch(env.now),
            uuid: &env.uuid,
            steps: Cell::new(0),
            started: Instant::now(),
            exceeded: Cell::new(None),
        };
        let mut outputs = Vec::new();
        let mut size = 0usize;
        {
            let ctx = Ctx::<Workflow>::new(&run, Vars::new(vars));
            for result in self.filter.id.run((ctx, to_val(input))) {
                let value = result.map_err(|exn| exception_message(exn, &run))?;
                if outputs.len() == MAX_OUTPUTS {
                    return Err(EvalError::new(format!(
                        "the expression produced more than {MAX_OUTPUTS} results"
                    )));
                }
                outputs.push(from_val(&value, 0, &mut size)?);
                if outputs.len() == wanted {
                    break;
                }
            }
        }
        if let Some(why) = run.exceeded.get() {
            return Err(EvalError::new(why));
        }
        Ok(outputs)
    }
}

fn compile_error(message: impl Into<String>) -> CompileError {
    CompileError {
        message: message.into(),
    }
}

fn seconds_since_epoch(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// Refuses deeply nested text before jaq's recursive parser sees it.
fn check_nesting(text: &str) -> Result<(), CompileError> {
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_DEPTH {
            return Err(compile_error(format!(
                "the expression nests brackets more than {MAX_DEPTH} deep"
            )));
        }
    }
    Ok(())
}

/// Refuses the `def` keyword (a user recursion could overflow the stack). Syntax errors are
/// left for the loader to report.
fn check_no_def(text: &str) -> Result<(), CompileError> {
    fn has_def(tokens: &[Token<&str>]) -> bool {
        tokens.iter().any(|Token(s, tok)| match tok {
            Tok::Word => *s == "def",
            Tok::Block(inner) => has_def(inner),
            Tok::Str(parts) => parts.iter().any(|part| match part {
                StrPart::Term(token) => has_def(std::slice::from_ref(token)),
                _ => false,
            }),
            _ => false,
        })
    }
    match load::lex::Lexer::new(text).lex() {
        Ok(tokens) if has_def(&tokens) => Err(compile_error(
            "`def` is not allowed in workflow expressions",
        )),
        _ => Ok(()),
    }
}

/// Our versions of the standard definitions that loop, counting each step.
const BUDGETED_DEFS: &str = r#"
def repeat(f): def rec: (_stigmer_step | f), rec; rec;
def recurse(f): def rec: ., ((_stigmer_step | f) | rec); rec;
def while(cond; update): def rec: if cond then ., ((_stigmer_step | update) | rec) else empty end; rec;
def until(cond; update): def rec: if cond then . else (_stigmer_step | update) | rec end; rec;
def combinations: .[][] |= [.] | reduce .[] as $a ([]; . + ($a[] | _stigmer_step));
"#;

type Def = load::parse::Def<&'static str>;

/// The standard definitions, parsed once, with the looping ones replaced in place (later
/// definitions refer to earlier ones, so the order matters).
static PRELUDE: LazyLock<Vec<Def>> = LazyLock::new(|| {
    let budgeted: Vec<Def> = load::parse(BUDGETED_DEFS, |p| p.defs()).unwrap_or_default();
    assert_eq!(budgeted.len(), 5, "the budgeted definitions parse");
    let replace = |def: Def| {
        budgeted
            .iter()
            .find(|b| b.name == def.name && b.args.len() == def.args.len())
            .cloned()
            .unwrap_or(def)
    };
    jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .map(replace)
        .collect()
});

/// How our natives reach the evaluation's [`Run`] through jaq's per-evaluation data.
trait HasRun<'a> {
    fn run(&self) -> &'a Run<'a>;
}

impl<'a> HasRun<'a> for &'a Run<'a> {
    fn run(&self) -> &'a Run<'a> {
        self
    }
}

fn refused<'a, V: jaq_std::ValT + 'a>(name: &str) -> ValXs<'a, V> {
    let message = format!("`{name}` is not available in workflow expressions");
    box_once(Err(Exn::from(Error::str(message))))
}

/// Our natives: the refused ones, `debug`/`stderr` silenced, `now` and `uuid` from the
/// [`Determinism`], and the budgeted `range` and loop step. (Generic over the data kind like
/// jaq's own natives: rustc only coerces these closures to jaq's function pointers there.)
fn our_natives<D>() -> Box<[jaq_core::native::Filter<jaq_core::RunPtr<D>>]>
where
    D: DataT,
    for<'a> D::V<'a>: jaq_std::ValT,
    for<'a> D::Data<'a>: HasRun<'a>,
{
    Box::new([
        ("env", v(0), |_| refused("env")),
        ("halt", v(1), |_| refused("halt")),
        ("localtime", v(0), |_| refused("localtime")),
        ("strflocaltime", v(1), |_| refused("strflocaltime")),
        ("input", v(0), |_| refused("input")),
        ("inputs", v(0), |_| refused("inputs")),
        ("debug_empty", v(0), |_| Box::new(std::iter::empty())),
        ("stderr_empty", v(0), |_| Box::new(std::iter::empty())),
        ("now", v(0), |cv| {
            box_once(Ok(D::V::from(cv.0.data().run().now)))
        }),
        ("uuid", v(0), |cv| {
            box_once(Ok(D::V::from(cv.0.data().run().uuid.to_string())))
        }),
        // The identity, counting a loop iteration (see `BUDGETED_DEFS`).
        ("_stigmer_step", v(0), |cv| {
            let run = cv.0.data().run();
            let len = jaq_std::ValT::as_bytes(&cv.1).map_or(0, <[u8]>::len);
            box_once(run.tick_len(len).map(|()| cv.1))
        }),
        ("range", v(3), |cv| range(cv)),
    ])
}

fn our_funs<D>() -> impl Iterator<Item = Fun<D>>
where
    D: DataT,
    for<'a> D::V<'a>: jaq_std::ValT,
    for<'a> D::Data<'a>: HasRun<'a>,
{
    our_natives()
        .into_vec()
        .into_iter()
        .map(jaq_core::native::run)
}

/// `range($from; $to; $by)` as jaq's native, counting each output.
fn range<'a, D>(mut cv: Cv<'a, D>) -> ValXs<'a, D::V<'a>>
where
    D: DataT,
    D::V<'a>: jaq_std::ValT,
    D::Data<'a>: HasRun<'a>,
{
    use std::cmp::Ordering::{Equal, Greater, Less};
    let run = cv.0.data().run();
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let from = cv.0.pop_var();
    let direction = by.partial_cmp(&D::V::from(0isize)).unwrap_or(Equal);
    let mut next: Option<Result<D::V<'a>, Exn<'a, D::V<'a>>>> = Some(Ok(from));
    Box::new(std::iter::from_fn(move || {
        let x = match next.take()? {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        let more = match direction {
            Greater => x < to,
            Less => x > to,
            Equal => x != to,
        };
        if !more {
            return None;
        }
        if let Err(e) = run.tick() {
            return Some(Err(e));
        }
        next = Some((x.clone() + by.clone()).map_err(Exn::from));
        Some(Ok(x))
    }))
}

/// jaq's natives with the dangerous ones replaced (not removed: the standard definitions call
/// them) and ours added.
fn natives() -> Vec<Fun<Workflow>> {
    let mut ours: Vec<Fun<Workflow>> = our_funs::<Workflow>().collect();
    let mut funs: Vec<Fun<Workflow>> = jaq_core::funs::<Workflow>()
        .chain(jaq_std::funs::<Workflow>())
        .chain(jaq_json::funs::<Workflow>())
        .map(|(name, args, native)| {
            let arity = args.len();
            match ours
                .iter()
                .position(|(n, a, _)| *n == name && a.len() == arity)
            {
                Some(i) => ours.remove(i),
                None => (name, args, native),
            }
        })
        .collect();
    funs.extend(ours);
    funs
}

fn build(text: &str, extra: &[&str]) -> Result<Filter, CompileError> {
    let arena = Arena::default();
    let loader = Loader::new(PRELUDE.iter().cloned());
    let modules = loader
        .load(
            &arena,
            File {
                code: text,
                path: (),
            },
        )
        .map_err(|errors| load_error(text, errors))?;
    let vars = GLOBALS.iter().copied().chain(extra.iter().copied());
    let filter = Compiler::default()
        .with_funs(natives())
        .with_global_vars(vars)
        .compile(modules)
        .map_err(|errors| {
            let undefined = errors.into_iter().flat_map(|(_file, errors)| errors);
            let messages: Vec<String> = undefined
                .map(|(name, what)| match what {
                    jaq_core::compile::Undefined::Filter(arity) => {
                        format!("unknown function {name}/{arity}")
                    }
                    what => format!("unknown {} {name}", what.as_str()),
                })
                .collect();
            compile_error(messages.join("; "))
        })?;
    // The compiled filter holds no reference to the arena (its strings are owned).
    drop(arena);
    Ok(filter)
}

/// `found` is a slice of `text` when the error is in the user's text; its offset locates it.
fn position(text: &str, found: &str) -> String {
    let start = text.as_ptr() as usize;
    let at = found.as_ptr() as usize;
    if at >= start && at <= start + text.len() {
        let offset = at - start;
        let column = text[..offset].chars().count() + 1;
        if found.is_empty() {
            "at the end".to_string()
        } else {
            let snippet: String = found.chars().take(20).collect();
            format!("at column {column} (`{snippet}`)")
        }
    } else {
        "in the standard definitions".to_string()
    }
}

fn load_error(text: &str, errors: load::Errors<&str, ()>) -> CompileError {
    use load::lex::Expect as Lex;
    let mut messages = Vec::new();
    for (_file, error) in errors {
        match error {
            load::Error::Lex(errors) => {
                for (expected, found) in errors {
                    let expected = match expected {
                        Lex::Digit => "a digit",
                        Lex::Ident => "an identifier",
                        Lex::Delim("(") => "a closing parenthesis",
                        Lex::Delim("[") => "a closing bracket",
                        Lex::Delim("{") => "a closing brace",
                        Lex::Delim(_) => "a closing quote",
                        Lex::Escape => "a string escape sequence",
                        Lex::Unicode => "a 4-digit hexadecimal code point",
                        _ => "a token",
                    };
                    let at = position(text, found);
                    messages.push(format!("syntax error {at}: expected {expected}"));
                }
            }
            load::Error::Parse(errors) => {
                for (expected, found) in errors {
                    let at = position(text, found);
                    messages.push(format!("syntax error {at}: expected {}", expected.as_str()));
                }
            }
            load::Error::Io(errors) => {
                for (path, _why) in errors {
                    messages.push(format!(
                        "modules are not available in workflow expressions (`{path}`)"
                    ));
                }
            }
        }
    }
    if messages.is_empty() {
        messages.push("syntax error".to_string());
    }
    compile_error(messages.join("; "))
}

fn exception_message(exn: Exn<'_, Val>, run: &Run<'_>) -> EvalError {
    match exn.get_err() {
        Ok(error) => {
            let message = match error.into_val() {
                Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(&b).into_owned(),
                other => other.to_string(),
            };
            EvalError::new(truncate(message))
        }
        Err(exn) => match exn.get_halt() {
            Ok(_) => EvalError::new(
                run.exceeded
                    .get()
                    .unwrap_or("`halt` is not available in workflow expressions"),
            ),
            Err(_) => EvalError::new("internal error: an unexpected jq control exception"),
        },
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// serde_json to jaq: integers stay integers (beyond `isize` as big integers).
fn to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(if let Some(i) = n.as_i64() {
            Num::from_integral(i)
        } else if let Some(u) = n.as_u64() {
            Num::from_integral(u)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }),
        Value::String(s) => Val::utf8_str(s.clone().into_bytes()),
        Value::Array(items) => items.iter().map(to_val).collect(),
        Value::Object(map) => Val::obj(
            map.iter()
                .map(|(k, v)| (Val::utf8_str(k.clone().into_bytes()), to_val(v)))
                .collect(),
        ),
    }
}

/// jaq to serde_json, bounded in depth and size. NaN becomes null and infinities the largest
/// finite numbers (as jq prints them); numbers serde_json cannot hold exactly become floats.
fn from_val(value: &Val, depth: usize, size: &mut usize) -> Result<Value, EvalError> {
    if depth > MAX_DEPTH {
        return Err(EvalError::new(format!(
            "the expression's result is nested more than {MAX_DEPTH} deep"
        )));
    }
    *size += 8;
    let string = |bytes: &[u8], size: &mut usize| {
        *size += bytes.len();
        String::from_utf8_lossy(bytes).into_owned()
    };
    let value = match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => number(n),
        Val::TStr(b) | Val::BStr(b) => Value::String(string(b, size)),
        Val::Arr(items) => Value::Array(
            items
                .iter()
                .map(|item| from_val(item, depth + 1, size))
                .collect::<Result<_, _>>()?,
        ),
        Val::Obj(map) => {
            let mut object = serde_json::Map::new();
            for (k, v) in map.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => string(b, size),
                    other => other.to_string(),
                };
                object.insert(key, from_val(v, depth + 1, size)?);
            }
            Value::Object(object)
        }
    };
    if *size > MAX_RESULT_SIZE {
        return Err(EvalError::new(
            "the expression's result is larger than 64 MiB",
        ));
    }
    Ok(value)
}

fn number(n: &Num) -> Value {
    let float = |f: f64| {
        if f.is_nan() {
            Value::Null
        } else {
            let f = f.clamp(f64::MIN, f64::MAX);
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
    };
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::Float(f) => float(*f),
        // Big integers and decimal literals: their text is a JSON number; serde_json keeps it
        // exactly when it fits an i64/u64, else as the nearest float.
        Num::BigInt(_) | Num::Dec(_) => {
            let text = Val::Num(n.clone()).to_string();
            if let Ok(i) = text.parse::<i64>() {
                Value::from(i)
            } else if let Ok(u) = text.parse::<u64>() {
                Value::from(u)
            } else {
                float(text.parse::<f64>().unwrap_or(f64::NAN))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn env() -> Determinism {
        Determinism {
            now: UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
            uuid: "0b4f2e3a-0000-4000-8000-000000000001".to_string(),
        }
    }

    fn globals() -> [Value; 8] {
        [
            json!({"ctx": 1}),
            json!({"in": 2}),
            json!(null),
            json!({"TOKEN": "secret-placeholder"}),
            json!({"name": "t1"}),
            json!({"id": "wf-1"}),
            json!({"name": "stigmer"}),
            json!(null),
        ]
    }

    fn eval(text: &str, input: Value) -> Result<Value, EvalError> {
        let expr = Expr::compile(text, &[]).map_err(|e| EvalError::new(e.message))?;
        expr.eval(&input, &globals(), &[], &env())
    }

    fn ok(text: &str, input: Value) -> Value {
        eval(text, input).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn compile_err(text: &str) -> String {
        match Expr::compile(text, &[]) {
            Ok(_) => panic!("{text} compiled"),
            Err(e) => e.message,
        }
    }

    fn eval_err(text: &str, input: Value) -> String {
        match eval(text, input) {
            Ok(v) => panic!("{text} gave {v}"),
            Err(e) => e.message,
        }
    }

    /// Asserts a runaway expression fails with a budget error. The budget counts steps, not
    /// time, so the bound on time only catches one that never ends (generous: a debug build on
    /// a loaded machine is slow).
    fn runaway(text: &str) {
        let started = Instant::now();
        let message = eval_err(text, json!(null));
        let took = started.elapsed();
        assert!(
            message.contains("budget") || message.contains("larger than"),
            "{text}: {message}"
        );
        assert!(took < Duration::from_secs(30), "{text} took {took:?}");
    }

    #[test]
    fn unwrap_strict_mode() {
        assert_eq!(unwrap("${ .a }"), Some(" .a "));
        assert_eq!(unwrap("  ${.a + 1}\n"), Some(".a + 1"));
        assert_eq!(unwrap("${\n  .a\n}"), Some("\n  .a\n"));
        assert_eq!(unwrap("${ {a: 1} }"), Some(" {a: 1} "));
        assert_eq!(unwrap(".customer"), None);
        assert_eq!(unwrap("hello ${ .a }"), None);
        assert_eq!(unwrap("${}"), None);
        assert_eq!(unwrap("${ .a } tail"), None);
    }

    #[test]
    fn evaluates_jq() {
        assert_eq!(ok(".a + 1", json!({"a": 41})), json!(42));
        assert_eq!(ok(".[0]", json!([7, 8])), json!(7));
        assert_eq!(
            ok(".color == \"red\"", json!({"color": "red"})),
            json!(true)
        );
        assert_eq!(ok("map(. * 2)", json!([1, 2])), json!([2, 4]));
        assert_eq!(ok("empty", json!(1)), json!(null));
        assert_eq!(ok("[.[] | select(. > 1)]", json!([1, 2, 3])), json!([2, 3]));
        assert_eq!(ok("{a: 1} + {b: 2}", json!(null)), json!({"a": 1, "b": 2}));
        assert_eq!(ok("\"x\\(.a)y\"", json!({"a": 1})), json!("x1y"));
        assert_eq!(ok("[paths]", json!({"a": [1]})), json!([["a"], ["a", 0]]));
        assert_eq!(ok("\"a-b\" | split(\"-\")", json!(null)), json!(["a", "b"]));
        assert_eq!(ok("test(\"^a.c$\")", json!("abc")), json!(true));
        assert_eq!(ok("1.5", json!(null)), json!(1.5));
        assert_eq!(ok("[1,[2]] | flatten", json!(null)), json!([1, 2]));
        assert_eq!(ok("\"def\" + \"x\"", json!(null)), json!("defx"));
    }

    #[test]
    fn globals_and_extra_variables() {
        assert_eq!(ok("$context.ctx", json!(null)), json!(1));
        assert_eq!(ok("$input.in", json!(null)), json!(2));
        assert_eq!(ok("$output", json!(null)), json!(null));
        assert_eq!(
            ok("$secrets.TOKEN", json!(null)),
            json!("secret-placeholder")
        );
        assert_eq!(ok("$task.name", json!(null)), json!("t1"));
        assert_eq!(ok("$workflow.id", json!(null)), json!("wf-1"));
        assert_eq!(ok("$runtime.name", json!(null)), json!("stigmer"));
        assert_eq!(ok("$authorization", json!(null)), json!(null));

        let expr = Expr::compile("[$item, $index, $context.ctx]", &["$item", "$index"]).unwrap();
        let out = expr
            .eval(&json!(null), &globals(), &[json!("x"), json!(3)], &env())
            .unwrap();
        assert_eq!(out, json!(["x", 3, 1]));
        assert!(
            expr.eval(&json!(null), &globals(), &[json!("x")], &env())
                .is_err()
        );
        assert!(Expr::compile(".", &["item"]).is_err());
    }

    #[test]
    fn eval_all_returns_the_stream() {
        let expr = Expr::compile(".[]", &[]).unwrap();
        let out = expr
            .eval_all(&json!([1, "a", null]), &globals(), &[], &env())
            .unwrap();
        assert_eq!(out, vec![json!(1), json!("a"), json!(null)]);
        let out = expr.eval_all(&json!([]), &globals(), &[], &env()).unwrap();
        assert!(out.is_empty());
        // eval takes the first and stops: the rest is never computed.
        assert_eq!(ok("1, error(\"never\")", json!(null)), json!(1));
    }

    #[test]
    fn eval_all_caps_the_number_of_results() {
        let expr = Expr::compile("range(20000)", &[]).unwrap();
        let err = expr
            .eval_all(&json!(null), &globals(), &[], &env())
            .unwrap_err();
        assert!(err.message.contains("more than 10000 results"), "{err}");
        let expr = Expr::compile("range(10000)", &[]).unwrap();
        let out = expr
            .eval_all(&json!(null), &globals(), &[], &env())
            .unwrap();
        assert_eq!(out.len(), 10000);
    }

    #[test]
    fn object_key_order_is_kept_inside_jq() {
        let input = json!({"b": 1, "a": 2});
        // serde_json sorts keys unless built with `preserve_order`; jq keeps insertion order.
        assert_eq!(
            ok("{z: 1, y: 2} | keys_unsorted", json!(null)),
            json!(["z", "y"])
        );
        assert_eq!(
            ok("{z: 1, y: 2} | tojson", json!(null)),
            json!("{\"z\":1,\"y\":2}")
        );
        assert_eq!(ok(". + {c: 3} | keys", input), json!(["a", "b", "c"]));
    }

    #[test]
    fn big_integers_keep_precision() {
        assert_eq!(
            ok(".", json!(9007199254740993u64)),
            json!(9007199254740993u64)
        );
        assert_eq!(
            ok(". + 1", json!(9007199254740993u64)),
            json!(9007199254740994u64)
        );
        assert_eq!(ok(".", json!(u64::MAX)), json!(u64::MAX));
        assert_eq!(ok(".", json!(i64::MIN)), json!(i64::MIN));
        assert_eq!(
            ok("9007199254740993", json!(null)),
            json!(9007199254740993u64)
        );
        assert_eq!(ok(". - 1", json!(u64::MAX)), json!(u64::MAX - 1));
        // Beyond u64 serde_json (without arbitrary_precision) can only hold a float.
        assert_eq!(ok(". + 1", json!(u64::MAX)), json!(18446744073709551616.0));
        assert_eq!(ok("nan", json!(null)), json!(null));
        assert_eq!(ok("infinite", json!(null)), json!(f64::MAX));
        assert_eq!(ok("-infinite", json!(null)), json!(f64::MIN));
    }

    #[test]
    fn strings_round_trip() {
        let s = "héllo \u{1F600} \"quoted\" \n";
        assert_eq!(ok(".", json!(s)), json!(s));
        assert_eq!(ok("length", json!(s)), json!(s.chars().count()));
        assert_eq!(ok("{(.): 1}", json!("k")), json!({"k": 1}));
    }

    #[test]
    fn now_and_uuid_come_from_determinism() {
        let expr = Expr::compile("[now, uuid]", &[]).unwrap();
        let one = expr.eval(&json!(null), &globals(), &[], &env()).unwrap();
        assert_eq!(
            one,
            json!([1_700_000_000.5, "0b4f2e3a-0000-4000-8000-000000000001"])
        );
        let other = Determinism {
            now: UNIX_EPOCH + Duration::from_secs(86400),
            uuid: "other".to_string(),
        };
        let two = expr.eval(&json!(null), &globals(), &[], &other).unwrap();
        assert_eq!(two, json!([86400.0, "other"]));
        assert_eq!(
            ok("now | todate", json!(null)),
            json!("2023-11-14T22:13:20.5Z")
        );
    }

    #[test]
    fn denied_natives_fail() {
        for (text, name) in [
            ("env", "env"),
            ("env.HOME", "env"),
            ("halt", "halt"),
            ("halt_error", "halt"),
            ("halt_error(1)", "halt"),
            ("0 | localtime", "localtime"),
            ("0 | strflocaltime(\"%Y\")", "strflocaltime"),
            ("input", "input"),
            ("[inputs]", "inputs"),
        ] {
            let message = eval_err(text, json!(null));
            assert_eq!(
                message,
                format!("`{name}` is not available in workflow expressions"),
                "{text}"
            );
        }
        assert!(compile_err("$ENV").contains("unknown variable $ENV"));
        // `try` catches a refusal like any error, and nothing exits the process.
        assert_eq!(
            ok("try halt catch \"caught\"", json!(null)),
            json!("caught")
        );
    }

    #[test]
    fn debug_and_stderr_are_silent_identities() {
        assert_eq!(ok("debug", json!({"a": 1})), json!({"a": 1}));
        assert_eq!(ok("debug(\"msg\")", json!(2)), json!(2));
        assert_eq!(ok("stderr | . + 1", json!(2)), json!(3));
        assert_eq!(ok("[debug]", json!(1)), json!([1]));
    }

    #[test]
    fn def_is_refused() {
        let message = compile_err("def f: 1 + f; f");
        assert_eq!(message, "`def` is not allowed in workflow expressions");
        assert!(compile_err("[1] | map(def g: 1; g)").contains("`def`"));
        assert!(compile_err("\"\\(def f: 1; f)\"").contains("`def`"));
        // A `def` in a string is just text (as an object key it must be quoted).
        assert_eq!(
            ok("{\"def\": \"def\"} | .[\"def\"]", json!(null)),
            json!("def")
        );
    }

    #[test]
    fn compile_errors_are_one_line() {
        assert_eq!(compile_err("$foo"), "unknown variable $foo");
        assert_eq!(compile_err("foo(1)"), "unknown function foo/1");
        let message = compile_err(".a +");
        assert!(message.starts_with("syntax error"), "{message}");
        let message = compile_err(".a | if . then 1");
        assert!(message.starts_with("syntax error"), "{message}");
        let message = compile_err("(.a");
        assert!(message.contains("closing parenthesis"), "{message}");
        let message = compile_err(".a ) .b");
        assert!(message.contains("column 4"), "{message}");
        assert!(compile_err("import \"x\" as x; .").contains("modules"));
        assert!(!compile_err("[[[[.]]").contains('\n'));
        let deep = format!("{}.{}", "(".repeat(5000), ")".repeat(5000));
        assert!(compile_err(&deep).contains("nests"));
    }

    #[test]
    fn runtime_errors_are_readable() {
        let message = eval_err(".a.b", json!({"a": 1}));
        assert_eq!(message, "cannot index 1 with \"b\"");
        assert_eq!(eval_err("error(\"x\")", json!(null)), "x");
        assert_eq!(eval_err("error({a: 1})", json!(null)), "{\"a\":1}");
        assert!(eval_err("{} + 1", json!(null)).contains("cannot calculate"));
        assert_eq!(ok("try error(\"x\") catch .", json!(null)), json!("x"));
        let long = eval_err(".k.a", json!({"k": "v".repeat(5000)}));
        assert!(
            long.chars().count() <= MAX_MESSAGE_LEN + 1,
            "{}",
            long.len()
        );
    }

    #[test]
    fn generators_are_budgeted() {
        assert_eq!(ok("[range(10000)] | length", json!(null)), json!(10000));
        assert_eq!(ok("[limit(3; repeat(1))]", json!(null)), json!([1, 1, 1]));
        assert_eq!(
            ok(
                "[.[] | recurse(if . < 3 then . + 1 else empty end)]",
                json!([1])
            ),
            json!([1, 2, 3])
        );
        assert_eq!(
            ok("[1 | while(. < 4; . + 1)]", json!(null)),
            json!([1, 2, 3])
        );
        assert_eq!(ok("1 | until(. > 100; . * 2)", json!(null)), json!(128));
        assert_eq!(ok("[range(0; 10; 3)]", json!(null)), json!([0, 3, 6, 9]));
        assert_eq!(ok("[range(5; 0; -2)]", json!(null)), json!([5, 3, 1]));
        assert_eq!(
            ok("[[1, 2], [3, 4]] | [combinations]", json!(null)),
            json!([[1, 3], [1, 4], [2, 3], [2, 4]])
        );
        assert_eq!(
            ok("reduce range(100000) as $x (0; . + 1)", json!(null)),
            json!(100000)
        );
        assert_eq!(
            ok("[limit(100000; repeat(1))] | length", json!(null)),
            json!(100000)
        );

        runaway("[range(1e9)]");
        runaway("last(repeat(1))");
        runaway("[limit(1e9; repeat(1))] | length");
        runaway("reduce range(1e9) as $x (0; .+1)");
        runaway("[range(0; 1; 0)]");
        runaway("last(1 | recurse(. + 1))");
        runaway("last(1 | while(true; . + 1))");
        runaway("0 | until(false; . + 1)");
        runaway("\"a\" | until(false; . + .)");
        runaway("[range(1000) as $a | range(1000) as $b | range(1000)] | length");
        runaway(
            "[[range(100)], [range(100)], [range(100)], [range(100)]] | [combinations] | length",
        );
    }

    #[test]
    fn budget_cannot_be_caught() {
        runaway("try last(repeat(1)) catch 0");
        runaway("(last(repeat(1)))? // 0");
        runaway("[.[]?, (last(range(1e9)) // 1)]");
        runaway("first(range(1e9) | select(. < 0)) // \"none\"");
    }

    #[test]
    fn secret_names_are_found_statically() {
        assert_eq!(secret_names("$secrets.TOKEN"), vec!["TOKEN"]);
        assert_eq!(
            secret_names(
                "{a: $secrets.A, b: $secrets[\"B-1\"], c: $secrets.\"C 2\", d: $secrets.A}"
            ),
            vec!["A", "B-1", "C 2"]
        );
        assert_eq!(secret_names("$secrets . X"), vec!["X"]);
        assert_eq!(secret_names("$secrets.[\"Y\"]"), vec!["Y"]);
        assert!(secret_names(".secrets.X + $secretsX").is_empty());
        assert!(secret_names("$secrets").is_empty());
    }

    #[test]
    fn expr_is_shareable() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Expr>();
        let expr = Expr::compile(" .a ", &[]).unwrap();
        assert_eq!(expr.text(), " .a ");
        let copy = expr.clone();
        assert_eq!(
            copy.eval(&json!({"a": 1}), &globals(), &[], &env())
                .unwrap(),
            json!(1)
        );
    }

    #[test]
    fn huge_results_are_refused() {
        let message = eval_err("[limit(20; repeat(\"x\" * 4000000))] | add", json!(null));
        assert!(message.contains("larger than"), "{message}");
    }

    /// Run with `cargo test --release -p stigmer-workflow --lib expr -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, for the numbers in the module doc"]
    fn timing() {
        let started = Instant::now();
        for _ in 0..100 {
            Expr::compile(".a + 1", &[]).unwrap();
        }
        println!("compile: {:?}", started.elapsed() / 100);
        let expr = Expr::compile(".a + 1", &[]).unwrap();
        let (input, globals, env) = (json!({"a": 1}), globals(), env());
        let started = Instant::now();
        for _ in 0..10000 {
            expr.eval(&input, &globals, &[], &env).unwrap();
        }
        println!("eval: {:?}", started.elapsed() / 10000);
    }
}
