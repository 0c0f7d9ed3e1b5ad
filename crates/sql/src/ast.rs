//! The syntax tree of ksqlDB statements, as the parser builds it. Names are kept as
//! written after ksqlDB's rules (unquoted upper-cased, quoted as is); nothing is resolved
//! against a catalog here.

/// Data types (`INT`, `DECIMAL(4, 2)`, `ARRAY<STRING>`, `STRUCT<A INT>`, or a custom type's
/// name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    Boolean,
    Int,
    Bigint,
    Double,
    Decimal {
        precision: u32,
        scale: u32,
    },
    String,
    Bytes,
    Timestamp,
    Date,
    Time,
    Array(Box<SqlType>),
    Map(Box<SqlType>, Box<SqlType>),
    Struct(Vec<(String, SqlType)>),
    /// A name registered with CREATE TYPE.
    Custom(String),
}

/// Window length units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl TimeUnit {
    pub fn millis(self) -> i64 {
        match self {
            TimeUnit::Milliseconds => 1,
            TimeUnit::Seconds => 1_000,
            TimeUnit::Minutes => 60_000,
            TimeUnit::Hours => 3_600_000,
            TimeUnit::Days => 86_400_000,
        }
    }
}

/// A duration as written (`1 HOUR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    pub amount: i64,
    pub unit: TimeUnit,
}

impl Duration {
    pub fn millis(self) -> i64 {
        self.amount.saturating_mul(self.unit.millis())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Boolean(bool),
    /// Integers keep their text: INT or BIGINT is decided by range later.
    Integer(i64),
    /// Kept as written (scale matters: `1.50` is DECIMAL(3, 2)).
    Decimal(String),
    Double(f64),
    String(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulus,
    Concat,
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    /// A column, optionally qualified by its source (`s.col`).
    Column {
        source: Option<String>,
        name: String,
    },
    /// `${name}` left for substitution.
    Variable(String),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Negate(Box<Expr>),
    Not(Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    IsDistinctFrom {
        left: Box<Expr>,
        right: Box<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        escape: Option<String>,
        negated: bool,
    },
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`.
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Cast {
        expr: Box<Expr>,
        to: SqlType,
    },
    /// `f(args)`, `COUNT(*)` (star), with lambdas last (`TRANSFORM(a, x => x + 1)`).
    Function {
        name: String,
        args: Vec<Expr>,
        star: bool,
    },
    /// A window unit given as a function argument (`TIMESTAMPADD(SECONDS, 5, ts)`).
    Unit(TimeUnit),
    Lambda {
        params: Vec<String>,
        body: Box<Expr>,
    },
    /// `a[i]`.
    Subscript {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    /// `s->field`.
    Dereference {
        base: Box<Expr>,
        field: String,
    },
    Array(Vec<Expr>),
    Map(Vec<(Expr, Expr)>),
    Struct(Vec<(String, Expr)>),
    /// `TIMESTAMP '2020-01-01T00:00:00'` and the like.
    TypedLiteral {
        type_name: String,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*` or `source.*`.
    All {
        source: Option<String>,
    },
    /// `s->*`.
    StructAll(Expr),
    Expr {
        expr: Expr,
        alias: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    Inner,
    Left,
    Right,
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub kind: JoinType,
    pub source: String,
    pub alias: Option<String>,
    /// `WITHIN 1 HOUR` (before = after) or `WITHIN (1 HOUR, 2 HOURS)`, and its grace.
    pub within: Option<(Duration, Duration, Option<Duration>)>,
    pub on: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WindowKind {
    Tumbling { size: Duration },
    Hopping { size: Duration, advance: Duration },
    Session { gap: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub kind: WindowKind,
    pub retention: Option<Duration>,
    pub grace: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    Changes,
    Final,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Vec<SelectItem>,
    pub from: String,
    pub from_alias: Option<String>,
    pub joins: Vec<Join>,
    pub window: Option<Window>,
    pub where_clause: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub partition_by: Vec<Expr>,
    pub having: Option<Expr>,
    pub emit: Option<Emit>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnConstraint {
    None,
    Key,
    PrimaryKey,
    Headers,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub sql_type: SqlType,
    pub constraint: ColumnConstraint,
    /// `HEADER('key')`.
    pub header: Option<String>,
}

/// `WITH (kafka_topic='t', partitions=1)`: names upper-cased, values as literals.
pub type Properties = Vec<(String, Literal)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Stream,
    Table,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Query(Query),
    CreateSource {
        kind: SourceKind,
        or_replace: bool,
        source: bool,
        if_not_exists: bool,
        name: String,
        columns: Vec<ColumnDef>,
        properties: Properties,
    },
    CreateAsSelect {
        kind: SourceKind,
        or_replace: bool,
        if_not_exists: bool,
        name: String,
        properties: Properties,
        query: Query,
    },
    InsertInto {
        target: String,
        properties: Properties,
        query: Query,
    },
    InsertValues {
        target: String,
        columns: Vec<String>,
        values: Vec<Expr>,
    },
    Drop {
        kind: SourceKind,
        if_exists: bool,
        name: String,
        delete_topic: bool,
    },
    Terminate {
        /// None: `TERMINATE ALL`.
        query_id: Option<String>,
    },
    ListStreams {
        extended: bool,
    },
    ListTables {
        extended: bool,
    },
    ListTopics {
        all: bool,
        extended: bool,
    },
    ListQueries {
        extended: bool,
    },
    ListProperties,
    ListFunctions,
    ListTypes,
    ListVariables,
    Describe {
        name: String,
        extended: bool,
    },
    DescribeStreams {
        extended: bool,
    },
    DescribeFunction {
        name: String,
    },
    Explain(Box<ExplainTarget>),
    Print {
        topic: String,
        from_beginning: bool,
        interval: Option<i64>,
        limit: Option<i64>,
    },
    SetProperty {
        name: String,
        value: String,
    },
    UnsetProperty {
        name: String,
    },
    Define {
        name: String,
        value: String,
    },
    Undefine {
        name: String,
    },
    RunScript {
        path: String,
    },
    CreateType {
        if_not_exists: bool,
        name: String,
        sql_type: SqlType,
    },
    DropType {
        if_exists: bool,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExplainTarget {
    Statement(Box<Statement>),
    QueryId(String),
}

impl Expr {
    /// A copy of the expression where `f` replaced what it chose to (top-down: a replaced
    /// node's children are not visited).
    pub fn rewrite(&self, f: &mut dyn FnMut(&Expr) -> Option<Expr>) -> Expr {
        if let Some(e) = f(self) {
            return e;
        }
        let mut r = |e: &Expr| e.rewrite(f);
        let b = |e: Expr| Box::new(e);
        match self {
            Expr::Literal(_)
            | Expr::Column { .. }
            | Expr::Variable(_)
            | Expr::Unit(_)
            | Expr::TypedLiteral { .. } => self.clone(),
            Expr::Binary { op, left, right } => Expr::Binary {
                op: *op,
                left: b(r(left)),
                right: b(r(right)),
            },
            Expr::Negate(e) => Expr::Negate(b(r(e))),
            Expr::Not(e) => Expr::Not(b(r(e))),
            Expr::IsNull { expr, negated } => Expr::IsNull {
                expr: b(r(expr)),
                negated: *negated,
            },
            Expr::IsDistinctFrom {
                left,
                right,
                negated,
            } => Expr::IsDistinctFrom {
                left: b(r(left)),
                right: b(r(right)),
                negated: *negated,
            },
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => Expr::Between {
                expr: b(r(expr)),
                low: b(r(low)),
                high: b(r(high)),
                negated: *negated,
            },
            Expr::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: b(r(expr)),
                list: list.iter().map(&mut r).collect(),
                negated: *negated,
            },
            Expr::Like {
                expr,
                pattern,
                escape,
                negated,
            } => Expr::Like {
                expr: b(r(expr)),
                pattern: b(r(pattern)),
                escape: escape.clone(),
                negated: *negated,
            },
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => Expr::Case {
                operand: operand.as_ref().map(|o| b(r(o))),
                whens: whens.iter().map(|(w, t)| (r(w), r(t))).collect(),
                otherwise: otherwise.as_ref().map(|o| b(r(o))),
            },
            Expr::Cast { expr, to } => Expr::Cast {
                expr: b(r(expr)),
                to: to.clone(),
            },
            Expr::Function { name, args, star } => Expr::Function {
                name: name.clone(),
                args: args.iter().map(&mut r).collect(),
                star: *star,
            },
            Expr::Lambda { params, body } => Expr::Lambda {
                params: params.clone(),
                body: b(r(body)),
            },
            Expr::Subscript { base, index } => Expr::Subscript {
                base: b(r(base)),
                index: b(r(index)),
            },
            Expr::Dereference { base, field } => Expr::Dereference {
                base: b(r(base)),
                field: field.clone(),
            },
            Expr::Array(items) => Expr::Array(items.iter().map(&mut r).collect()),
            Expr::Map(entries) => Expr::Map(entries.iter().map(|(k, v)| (r(k), r(v))).collect()),
            Expr::Struct(fields) => {
                Expr::Struct(fields.iter().map(|(n, e)| (n.clone(), r(e))).collect())
            }
        }
    }
}
