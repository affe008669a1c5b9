//! A ring of the most recent simulated events, printed with a failing seed. Notes are
//! small `Copy`-like values formatted only on failure, so tracing costs little.

use std::collections::VecDeque;

use meshlog::replica::{AckLevel, FetchBody, Message, Output};

/// How many recent notes a failure prints.
const TRACE_LEN: usize = 120;

/// A message, reduced to its numbers.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // fields are read through Debug only
pub enum Msg {
    PreVote { epoch: u64, last_epoch: u64, last_end: u64 },
    PreVoteResp { epoch: u64, granted: bool },
    Vote { epoch: u64, last_epoch: u64, last_end: u64 },
    VoteResp { epoch: u64, granted: bool },
    Fetch { epoch: u64, offset: u64, last_epoch: u64, flushed_end: u64 },
    Entries { epoch: u64, hw: u64, first: Option<u64>, n: usize },
    Diverging { epoch: u64, hw: u64, div_epoch: u64, end: u64 },
    Behind { epoch: u64, hw: u64, start: u64 },
    Stale { epoch: u64 },
}

impl Msg {
    /// Summarise a core message.
    pub fn of(m: &Message) -> Msg {
        match m {
            Message::PreVote { epoch, last_epoch, last_end } => {
                Msg::PreVote { epoch: epoch.get(), last_epoch: last_epoch.get(), last_end: *last_end }
            }
            Message::PreVoteResp { epoch, granted } => {
                Msg::PreVoteResp { epoch: epoch.get(), granted: *granted }
            }
            Message::Vote { epoch, last_epoch, last_end } => {
                Msg::Vote { epoch: epoch.get(), last_epoch: last_epoch.get(), last_end: *last_end }
            }
            Message::VoteResp { epoch, granted } => Msg::VoteResp { epoch: epoch.get(), granted: *granted },
            Message::Fetch { epoch, offset, last_epoch, flushed_end } => Msg::Fetch {
                epoch: epoch.get(),
                offset: *offset,
                last_epoch: last_epoch.get(),
                flushed_end: *flushed_end,
            },
            Message::FetchResp { epoch, hw, body: FetchBody::Entries(es) } => {
                Msg::Entries { epoch: epoch.get(), hw: *hw, first: es.first().map(|e| e.base), n: es.len() }
            }
            Message::FetchResp { epoch, hw, body: FetchBody::Diverging { epoch: d, end, .. } } => {
                Msg::Diverging { epoch: epoch.get(), hw: *hw, div_epoch: d.get(), end: *end }
            }
            Message::FetchResp { epoch, hw, body: FetchBody::Behind { start, .. } } => {
                Msg::Behind { epoch: epoch.get(), hw: *hw, start: *start }
            }
            Message::Stale { epoch } => Msg::Stale { epoch: epoch.get() },
        }
    }
}

/// One traced happening.
#[derive(Debug, Clone)]
#[allow(dead_code)] // fields are read through Debug only
pub enum Note {
    Tick,
    Recv { from: usize, msg: Msg },
    Flushed { id: u64 },
    Request { token: u64, value: u64, acks: AckLevel },
    Leader { epoch: u64, leader: Option<usize> },
    Persist { promised: u64, voted_for: Option<usize> },
    Append { base: u64, end: u64, epoch: u64, payload: u64 },
    Truncate { end: u64 },
    Hw(u64),
    Ack { token: u64, result: String },
    Fault(String),
}

impl Note {
    /// The note for an output worth tracing (sends are traced on receipt).
    pub fn of_output(o: &Output) -> Option<Note> {
        Some(match o {
            Output::Leader { epoch, leader } => Note::Leader { epoch: epoch.get(), leader: *leader },
            Output::PersistHardState(h) => {
                Note::Persist { promised: h.promised.get(), voted_for: h.voted_for }
            }
            Output::Truncate { end } => Note::Truncate { end: *end },
            Output::HighWatermark(h) => Note::Hw(*h),
            Output::Ack { token, result } => Note::Ack { token: *token, result: format!("{result:?}") },
            _ => return None,
        })
    }
}

/// The ring.
#[derive(Debug, Default)]
pub struct Trace {
    notes: VecDeque<(u64, Option<usize>, Note)>,
}

impl Trace {
    /// Record a note at sim time `at_us` about `node`.
    pub fn note(&mut self, at_us: u64, node: Option<usize>, note: Note) {
        if self.notes.len() == TRACE_LEN {
            self.notes.pop_front();
        }
        self.notes.push_back((at_us, node, note));
    }

    /// The notes as printable lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.notes
            .iter()
            .map(|(at, node, n)| {
                let who = node.map_or("  ".to_string(), |n| format!("n{n}"));
                format!("{:>6}.{:03}ms {who} {n:?}", at / 1000, at % 1000)
            })
            .collect()
    }
}
