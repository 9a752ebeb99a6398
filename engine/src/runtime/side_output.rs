//! Side outputs: a stream whose main records go on in the same fused chain, and whose side
//! records (late data, rejects) leave through a ring to a branch of their own.
//!
//! Unlike a [split](crate::runtime::split), the main path has no ring hop: a window's results
//! reach the next operator or the sink in the same call chain, so a side output costs the main
//! path one branch per record. The side ring is on the same worker; watermarks, idleness,
//! barriers and the end go into it in order with the side records, and a full side ring
//! back-pressures the chain (it stops pulling input until the ring drains) instead of growing.

use crate::checkpoint::epoch::BarrierReport;
use crate::dataflow::operator::Emit;
use crate::error::JobError;
use crate::failure::Failure;
use crate::runtime::exchange::Outbox;
use crate::runtime::flow::{Flow, Progress};
use crate::runtime::message::{EventTime, Message};
use crate::runtime::metrics::NodeCounters;
use crate::runtime::split::Branch;

/// A flow whose records `route` sends on (`First`), into the side ring (`Second`), or both.
pub struct SideOutput<Fl, F, C> {
    flow: Fl,
    route: F,
    side: Outbox<C>,
    counters: NodeCounters,
    /// The upstream flow ended and the side ring was sent its end.
    ended: bool,
}

impl<Fl, F, C> std::fmt::Debug for SideOutput<Fl, F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SideOutput")
            .field("side_backlog", &self.side.backlog())
            .field("ended", &self.ended)
            .finish()
    }
}

impl<Fl, F, C> SideOutput<Fl, F, C> {
    pub(crate) fn new(flow: Fl, route: F, side: Outbox<C>, counters: NodeCounters) -> Self {
        Self {
            flow,
            route,
            side,
            counters,
            ended: false,
        }
    }
}

/// The [`Emit`] the upstream flow pushes into.
struct Routing<'a, E, F, C> {
    out: &'a mut E,
    route: &'a F,
    side: &'a mut Outbox<C>,
}

impl<T, A, C, E, F> Emit<T> for Routing<'_, E, F, C>
where
    E: Emit<A>,
    F: Fn(T) -> Branch<A, C>,
{
    #[inline]
    fn emit(&mut self, item: T) {
        match (self.route)(item) {
            Branch::First(a) => self.out.emit(a),
            Branch::Second(c) => self.side.send_record(0, c),
            Branch::Both(a, c) => {
                self.side.send_record(0, c);
                self.out.emit(a);
            }
        }
    }
    fn fail(&mut self, failure: Failure) {
        self.out.fail(failure);
    }
    #[inline]
    fn should_yield(&self) -> bool {
        self.side.backlog() > 0 || self.out.should_yield()
    }
    fn watermark(&mut self, watermark: EventTime) {
        self.side.send_watermark(watermark);
        self.out.watermark(watermark);
    }
    fn idle(&mut self) {
        self.side.send_idle();
        self.out.idle();
    }
}

impl<Fl, F, A, C> Flow for SideOutput<Fl, F, C>
where
    Fl: Flow,
    F: Fn(Fl::Out) -> Branch<A, C>,
{
    type Out = A;

    fn poll<E: Emit<A>>(&mut self, out: &mut E, budget: usize) -> Result<Progress, JobError> {
        self.side.drain();
        let progress = if self.side.backlog() > 0 {
            // The side branch runs on this worker and drains the ring this round.
            Progress::Busy
        } else if self.ended {
            Progress::Done
        } else {
            let mut routing = Routing {
                out,
                route: &self.route,
                side: &mut self.side,
            };
            match self.flow.poll(&mut routing, budget)? {
                Progress::Done => {
                    self.side.broadcast(|| Message::End);
                    self.ended = true;
                    // Not done until the side ring has taken everything, its end included.
                    if self.side.backlog() == 0 {
                        Progress::Done
                    } else {
                        Progress::Busy
                    }
                }
                Progress::Barrier(epoch) => {
                    self.side.broadcast(|| Message::Barrier(epoch));
                    Progress::Barrier(epoch)
                }
                p => p,
            }
        };
        self.side.notify();
        self.counters.publish_in(self.side.sent());
        Ok(progress)
    }

    fn take_barrier_report(&mut self, report: &mut BarrierReport) {
        self.flow.take_barrier_report(report);
    }
}
