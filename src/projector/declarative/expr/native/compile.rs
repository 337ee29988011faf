//! jaq's parse tree into [`Node`]s, for the terms of the subset; `None` for
//! anything else, which jaq alone then evaluates.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::ops::Math;
use jaq_core::path::{Opt, Part};
use serde_json::Value;

use super::{Arith, Node, Root, Step};

/// `at_event`: the input `.` is the event (at the top, and in whatever runs
/// on the same input), compiled to `Root::Event` so fields are read directly.
pub(super) fn compile(term: &Term<&str>, at_event: bool) -> Option<Node> {
    let input = || {
        if at_event {
            Node::Root(Root::Event)
        } else {
            Node::Input
        }
    };
    // A filter on the input: on the event it needs the event as a whole.
    let on_input = |node: Node| {
        if at_event {
            Node::Pipe(Box::new(Node::Root(Root::Event)), Box::new(node))
        } else {
            node
        }
    };
    let boxed = |term: &Term<&str>| compile(term, at_event).map(Box::new);
    Some(match term {
        Term::Id => input(),
        Term::Var("$event") => Node::Root(Root::Event),
        Term::Var("$state") => Node::Root(Root::State),
        Term::Var("$item") => Node::Root(Root::Item),
        Term::Num(text) => Node::Literal(Value::from(integer_literal(text)?)),
        Term::Neg(inner) => match inner.as_ref() {
            Term::Num(text) => Node::Literal(Value::from(integer_literal(text)?.checked_neg()?)),
            _ => return None,
        },
        Term::Str(None, parts) => Node::Literal(Value::String(literal_text(parts)?)),
        Term::Arr(None) => Node::Array(None),
        Term::Arr(Some(inner)) => Node::Array(Some(boxed(inner)?)),
        Term::Obj(entries) => {
            let mut compiled = Vec::new();
            for (key, value) in entries {
                let Term::Str(None, parts) = key else {
                    return None;
                };
                compiled.push((literal_text(parts)?, compile(value.as_ref()?, at_event)?));
            }
            Node::Object(compiled)
        }
        Term::Path(base, path) => {
            let mut steps = Vec::new();
            for (part, opt) in &path.0 {
                let step = match part {
                    Part::Index(Term::Str(None, parts)) => Step::Key(literal_text(parts)?),
                    Part::Range(None, None) => Step::Each,
                    Part::Range(from, to) => Step::Slice {
                        from: slice_bound(from.as_ref())?,
                        to: slice_bound(to.as_ref())?,
                    },
                    _ => return None,
                };
                steps.push((step, matches!(opt, Opt::Optional)));
            }
            Node::Path(boxed(base)?, steps)
        }
        Term::BinOp(left, op, right) => {
            let (l, r) = (left.as_ref(), right.as_ref());
            match op {
                BinaryOp::Pipe(None) => pipe(compile(l, at_event)?, compile(r, false)?),
                BinaryOp::Comma => Node::Comma(boxed(l)?, boxed(r)?),
                BinaryOp::Alt => Node::Alt(boxed(l)?, boxed(r)?),
                BinaryOp::Math(math) => Node::Arith(boxed(l)?, arith_of(math)?, boxed(r)?),
                BinaryOp::Cmp(cmp) => Node::Compare(boxed(l)?, *cmp, boxed(r)?),
                BinaryOp::And => Node::Logic(boxed(l)?, false, boxed(r)?),
                BinaryOp::Or => Node::Logic(boxed(l)?, true, boxed(r)?),
                BinaryOp::UpdateMath(math) if !at_event => {
                    Node::Update(key_path(l)?, arith_of(math)?, boxed(r)?)
                }
                _ => return None,
            }
        }
        Term::IfThenElse(branches, otherwise) => {
            let mut node = match otherwise {
                Some(otherwise) => compile(otherwise, at_event)?,
                None => input(),
            };
            for (condition, then) in branches.iter().rev() {
                node = Node::If(boxed(condition)?, boxed(then)?, Box::new(node));
            }
            node
        }
        Term::Call(name, args) => match (*name, args.as_slice()) {
            ("null", []) => Node::Literal(Value::Null),
            ("true", []) => Node::Literal(Value::Bool(true)),
            ("false", []) => Node::Literal(Value::Bool(false)),
            ("empty", []) => Node::Empty,
            ("not", []) => on_input(Node::Not),
            ("add", []) => on_input(Node::Add),
            ("select", [condition]) => on_input(Node::Select(Box::new(compile(condition, false)?))),
            _ => return None,
        },
        _ => return None,
    })
}

/// `left | right`, with `[inner] | add` (alone or before `// literal`)
/// summed as `inner` produces, without the list: both add the same values
/// in the same order, and give up on the same one.
fn pipe(left: Node, right: Node) -> Node {
    match (left, right) {
        (Node::Array(Some(inner)), Node::Add) => Node::Sum(inner),
        (Node::Array(Some(inner)), Node::Alt(add, otherwise))
            if matches!(*add, Node::Add) && matches!(*otherwise, Node::Literal(_)) =>
        {
            Node::Alt(Box::new(Node::Sum(inner)), otherwise)
        }
        (left, right) => Node::Pipe(Box::new(left), Box::new(right)),
    }
}

fn arith_of(math: &Math) -> Option<Arith> {
    match math {
        Math::Add => Some(Arith::Add),
        Math::Sub => Some(Arith::Sub),
        Math::Mul => Some(Arith::Mul),
        _ => None,
    }
}

/// `.a.b` as its keys (the left side of `op=`).
fn key_path(term: &Term<&str>) -> Option<Vec<String>> {
    let Term::Path(base, path) = term else {
        return None;
    };
    if !matches!(base.as_ref(), Term::Id) {
        return None;
    }
    let mut keys = Vec::new();
    for (part, opt) in &path.0 {
        match (part, opt) {
            (Part::Index(Term::Str(None, parts)), Opt::Essential) => {
                keys.push(literal_text(parts)?)
            }
            _ => return None,
        }
    }
    Some(keys)
}

/// A slice bound: absent, or a non-negative integer literal (`Some(None)`
/// for an absent one); `None` for anything else.
fn slice_bound(bound: Option<&Term<&str>>) -> Option<Option<usize>> {
    match bound {
        None => Some(None),
        Some(Term::Num(text)) => usize::try_from(integer_literal(text)?).ok().map(Some),
        Some(_) => None,
    }
}

/// A decimal integer literal as jaq reads it (`0`, `42`); others are left to jaq.
fn integer_literal(text: &str) -> Option<i64> {
    let digits = text.bytes().all(|byte| byte.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    (digits && canonical).then(|| text.parse().ok()).flatten()
}

/// A string literal without interpolation.
fn literal_text(parts: &[StrPart<&str, Term<&str>>]) -> Option<String> {
    let mut text = String::new();
    for part in parts {
        match part {
            StrPart::Str(plain) => text.push_str(plain),
            StrPart::Char(escaped) => text.push(*escaped),
            StrPart::Term(_) => return None,
        }
    }
    Some(text)
}
