//! The language's syntax: a lexer and a recursive-descent parser producing positioned ASTs.
//!
//! ```text
//! script := stmt*
//! stmt   := "fn" ["@" NAME] NAME "(" [NAME ":" TYPE {"," NAME ":" TYPE}] ")" "->" TYPE "=" expr
//!         | "print" ["@" NAME] expr
//! expr   := "if" expr "then" expr "else" expr | sum [("<" | "<=" | "==" | ">" | ">=") sum]
//! sum    := prod {("+" | "-") prod}
//! prod   := unary {("*" | "/") unary}
//! unary  := "-" unary | INT | FLOAT | "true" | "false" | NAME | NAME "(" [expr {"," expr}] ")"
//!         | "(" expr ")"
//! ```
//! `#` starts a comment. `fn @debug f(...)` defines `f` in the overlay table `debug`;
//! `print @debug e` evaluates `e` through `[debug, global]`.

use std::fmt;

/// A position in the script, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line.
    pub line: usize,
    /// Column.
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

/// An error with the position it refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

impl ScriptError {
    /// An error at `pos`.
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        ScriptError {
            pos,
            message: message.into(),
        }
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error at {}: {}", self.pos, self.message)
    }
}

impl std::error::Error for ScriptError {}

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (always floating point)
    Div,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// An expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// An integer literal.
    Int(i64, Pos),
    /// A floating-point literal.
    Float(f64, Pos),
    /// `true` or `false`.
    Bool(bool, Pos),
    /// A parameter.
    Var(String, Pos),
    /// `-e`
    Neg(Box<Expr>, Pos),
    /// `a op b`
    Bin(BinOp, Box<Expr>, Box<Expr>, Pos),
    /// `if c then a else b`
    If(Box<Expr>, Box<Expr>, Box<Expr>, Pos),
    /// `f(args)`
    Call(String, Vec<Expr>, Pos),
}

impl Expr {
    /// Where the expression starts.
    pub fn pos(&self) -> Pos {
        match self {
            Expr::Int(_, p)
            | Expr::Float(_, p)
            | Expr::Bool(_, p)
            | Expr::Var(_, p)
            | Expr::Neg(_, p)
            | Expr::Bin(_, _, _, p)
            | Expr::If(_, _, _, p)
            | Expr::Call(_, _, p) => *p,
        }
    }
}

/// A method definition: the method's source, as the engine stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct FnDef {
    /// The overlay table, if any.
    pub overlay: Option<String>,
    /// The function's name.
    pub name: String,
    /// Parameters: name, type name, position of the type.
    pub params: Vec<(String, String, Pos)>,
    /// The declared return type's name and position.
    pub ret: (String, Pos),
    /// The body.
    pub body: Expr,
    /// Where the definition starts.
    pub pos: Pos,
}

impl FnDef {
    /// The definition as text, without positions or comments: what its meaning depends on, so
    /// that moving a definition or reformatting it does not make it another method's source.
    pub fn canonical(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(name, ty, _)| format!("{name}: {ty}"))
            .collect();
        let overlay = self
            .overlay
            .as_deref()
            .map_or(String::new(), |o| format!("@{o} "));
        let mut body = String::new();
        canonical_expr(&self.body, &mut body);
        format!(
            "fn {overlay}{}({}) -> {} = {body}",
            self.name,
            params.join(", "),
            self.ret.0
        )
    }
}

fn canonical_expr(e: &Expr, out: &mut String) {
    use std::fmt::Write;
    match e {
        Expr::Int(i, _) => {
            let _ = write!(out, "{i}");
        }
        // By bits: every float, however it was written, has one rendering.
        Expr::Float(x, _) => {
            let _ = write!(out, "f{:#x}", x.to_bits());
        }
        Expr::Bool(b, _) => {
            let _ = write!(out, "{b}");
        }
        Expr::Var(name, _) => out.push_str(name),
        Expr::Neg(inner, _) => {
            out.push_str("(-");
            canonical_expr(inner, out);
            out.push(')');
        }
        Expr::Bin(op, a, b, _) => {
            out.push('(');
            canonical_expr(a, out);
            let _ = write!(out, " {op:?} ");
            canonical_expr(b, out);
            out.push(')');
        }
        Expr::If(c, a, b, _) => {
            out.push_str("(if ");
            canonical_expr(c, out);
            out.push_str(" then ");
            canonical_expr(a, out);
            out.push_str(" else ");
            canonical_expr(b, out);
            out.push(')');
        }
        Expr::Call(name, args, _) => {
            out.push_str(name);
            out.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                canonical_expr(a, out);
            }
            out.push(')');
        }
    }
}

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// A method definition (or redefinition).
    Def(FnDef),
    /// Evaluate and print, optionally through an overlay.
    Print(Option<String>, Expr, Pos),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Name(String),
    Int(i64),
    Float(f64),
    Sym(&'static str),
    End,
}

struct Lexer {
    toks: Vec<(Tok, Pos)>,
}

const SYMBOLS: [&str; 16] = [
    "->", "<=", ">=", "==", "(", ")", ",", ":", "=", "+", "-", "*", "/", "<", ">", "@",
];

fn lex(src: &str) -> Result<Lexer, ScriptError> {
    let mut toks = Vec::new();
    for (l, line) in src.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let pos = Pos {
                line: l + 1,
                col: i + 1,
            };
            let c = chars[i];
            if c == '#' {
                break;
            } else if c.is_whitespace() {
                i += 1;
            } else if c.is_ascii_digit() {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let tok = if text.contains('.') {
                    Tok::Float(
                        text.parse()
                            .map_err(|_| ScriptError::new(pos, format!("bad number `{text}`")))?,
                    )
                } else {
                    Tok::Int(text.parse().map_err(|_| {
                        ScriptError::new(pos, format!("integer `{text}` out of range"))
                    })?)
                };
                toks.push((tok, pos));
            } else if c.is_alphabetic() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                toks.push((Tok::Name(chars[start..i].iter().collect()), pos));
            } else {
                let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
                let sym = SYMBOLS
                    .iter()
                    .find(|s| rest.starts_with(**s))
                    .ok_or_else(|| ScriptError::new(pos, format!("unexpected character `{c}`")))?;
                i += sym.len();
                toks.push((Tok::Sym(sym), pos));
            }
        }
    }
    let end = Pos {
        line: src.lines().count().max(1),
        col: src.lines().last().map_or(1, |l| l.chars().count() + 1),
    };
    toks.push((Tok::End, end));
    Ok(Lexer { toks })
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }
    fn pos(&self) -> Pos {
        self.toks[self.at].1
    }
    fn bump(&mut self) -> (Tok, Pos) {
        let t = self.toks[self.at].clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }
    fn describe(t: &Tok) -> String {
        match t {
            Tok::Name(n) => format!("`{n}`"),
            Tok::Int(i) => format!("`{i}`"),
            Tok::Float(x) => format!("`{x}`"),
            Tok::Sym(s) => format!("`{s}`"),
            Tok::End => "end of input".into(),
        }
    }
    fn expect_sym(&mut self, s: &str) -> Result<Pos, ScriptError> {
        match self.bump() {
            (Tok::Sym(t), p) if t == s => Ok(p),
            (t, p) => Err(ScriptError::new(
                p,
                format!("expected `{s}`, found {}", Self::describe(&t)),
            )),
        }
    }
    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(t) if *t == s)
    }
    fn is_kw(&self, k: &str) -> bool {
        matches!(self.peek(), Tok::Name(n) if n == k)
    }
    fn name(&mut self, what: &str) -> Result<(String, Pos), ScriptError> {
        match self.bump() {
            (Tok::Name(n), p) if !KEYWORDS.contains(&n.as_str()) => Ok((n, p)),
            (t, p) => Err(ScriptError::new(
                p,
                format!("expected {what}, found {}", Self::describe(&t)),
            )),
        }
    }
    fn overlay(&mut self) -> Result<Option<String>, ScriptError> {
        if self.is_sym("@") {
            self.bump();
            Ok(Some(self.name("an overlay table name")?.0))
        } else {
            Ok(None)
        }
    }

    fn stmt(&mut self) -> Result<Stmt, ScriptError> {
        let pos = self.pos();
        if self.is_kw("fn") {
            self.bump();
            let overlay = self.overlay()?;
            let (name, _) = self.name("a function name")?;
            self.expect_sym("(")?;
            let mut params = Vec::new();
            if !self.is_sym(")") {
                loop {
                    let (p, _) = self.name("a parameter name")?;
                    self.expect_sym(":")?;
                    let (t, tp) = self.name("a type name")?;
                    params.push((p, t, tp));
                    if self.is_sym(",") {
                        self.bump();
                    } else {
                        break;
                    }
                }
            }
            self.expect_sym(")")?;
            self.expect_sym("->")?;
            let ret = self.name("a return type")?;
            self.expect_sym("=")?;
            let body = self.expr()?;
            Ok(Stmt::Def(FnDef {
                overlay,
                name,
                params,
                ret,
                body,
                pos,
            }))
        } else if self.is_kw("print") {
            self.bump();
            let overlay = self.overlay()?;
            Ok(Stmt::Print(overlay, self.expr()?, pos))
        } else {
            let (t, p) = self.bump();
            Err(ScriptError::new(
                p,
                format!("expected `fn` or `print`, found {}", Self::describe(&t)),
            ))
        }
    }

    fn expr(&mut self) -> Result<Expr, ScriptError> {
        let pos = self.pos();
        if self.is_kw("if") {
            self.bump();
            let c = self.expr()?;
            if !self.is_kw("then") {
                return Err(ScriptError::new(self.pos(), "expected `then`"));
            }
            self.bump();
            let a = self.expr()?;
            if !self.is_kw("else") {
                return Err(ScriptError::new(self.pos(), "expected `else`"));
            }
            self.bump();
            let b = self.expr()?;
            return Ok(Expr::If(Box::new(c), Box::new(a), Box::new(b), pos));
        }
        let lhs = self.sum()?;
        let op = match self.peek() {
            Tok::Sym("<") => BinOp::Lt,
            Tok::Sym("<=") => BinOp::Le,
            Tok::Sym("==") => BinOp::Eq,
            Tok::Sym(">") => BinOp::Gt,
            Tok::Sym(">=") => BinOp::Ge,
            _ => return Ok(lhs),
        };
        let p = self.bump().1;
        let rhs = self.sum()?;
        Ok(Expr::Bin(op, Box::new(lhs), Box::new(rhs), p))
    }

    fn sum(&mut self) -> Result<Expr, ScriptError> {
        let mut e = self.prod()?;
        while self.is_sym("+") || self.is_sym("-") {
            let (t, p) = self.bump();
            let op = if t == Tok::Sym("+") {
                BinOp::Add
            } else {
                BinOp::Sub
            };
            e = Expr::Bin(op, Box::new(e), Box::new(self.prod()?), p);
        }
        Ok(e)
    }

    fn prod(&mut self) -> Result<Expr, ScriptError> {
        let mut e = self.unary()?;
        while self.is_sym("*") || self.is_sym("/") {
            let (t, p) = self.bump();
            let op = if t == Tok::Sym("*") {
                BinOp::Mul
            } else {
                BinOp::Div
            };
            e = Expr::Bin(op, Box::new(e), Box::new(self.unary()?), p);
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, ScriptError> {
        let (t, p) = self.bump();
        match t {
            Tok::Sym("-") => Ok(Expr::Neg(Box::new(self.unary()?), p)),
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Int(i) => Ok(Expr::Int(i, p)),
            Tok::Float(x) => Ok(Expr::Float(x, p)),
            Tok::Name(n) if n == "true" => Ok(Expr::Bool(true, p)),
            Tok::Name(n) if n == "false" => Ok(Expr::Bool(false, p)),
            Tok::Name(n) if !KEYWORDS.contains(&n.as_str()) => {
                if self.is_sym("(") {
                    self.bump();
                    let mut args = Vec::new();
                    if !self.is_sym(")") {
                        loop {
                            args.push(self.expr()?);
                            if self.is_sym(",") {
                                self.bump();
                            } else {
                                break;
                            }
                        }
                    }
                    self.expect_sym(")")?;
                    Ok(Expr::Call(n, args, p))
                } else {
                    Ok(Expr::Var(n, p))
                }
            }
            t => Err(ScriptError::new(
                p,
                format!("expected an expression, found {}", Self::describe(&t)),
            )),
        }
    }
}

const KEYWORDS: [&str; 7] = ["fn", "print", "if", "then", "else", "true", "false"];

/// Parses a whole script.
pub fn parse(src: &str) -> Result<Vec<Stmt>, ScriptError> {
    let lexer = lex(src)?;
    let mut p = Parser {
        toks: lexer.toks,
        at: 0,
    };
    let mut stmts = Vec::new();
    while *p.peek() != Tok::End {
        stmts.push(p.stmt()?);
    }
    Ok(stmts)
}
