//! Where inputs meet (an exchange's rings, a union's sides), the watermark passed on is the
//! minimum over the inputs that are neither idle nor ended, and never falls.

use crate::dataflow::operator::Emit;
use crate::runtime::message::EventTime;

/// What a change of one input means for the combined watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Combined {
    /// Nothing to pass on.
    Same,
    /// The combined watermark rose to this.
    Rose(EventTime),
    /// Every open input is idle: pass on idleness, after this watermark if it is `Some`
    /// (the highest of the idle inputs' watermarks: each still holds for its own input, and
    /// no input is active to be overtaken, as Flink's valve does).
    Idle(Option<EventTime>),
}

impl Combined {
    /// Passes the change downstream.
    #[inline]
    pub(crate) fn pass_on<T, E: Emit<T>>(self, out: &mut E) {
        match self {
            Combined::Same => {}
            Combined::Rose(w) => out.watermark(w),
            Combined::Idle(w) => {
                if let Some(w) = w {
                    out.watermark(w);
                }
                out.idle();
            }
        }
    }
}

/// Per-input watermarks of one meeting point.
///
/// An input starts at `EventTime::MIN` (it holds everything back until it sends a watermark
/// or is marked idle), an idle input is left out until it sends a record or a watermark, and
/// an ended input is left out for good. The combined watermark only rises: an input that
/// rejoins behind it holds back later rises, not what was already passed on.
#[derive(Debug, Clone)]
pub(crate) struct InputWatermarks {
    marks: Vec<EventTime>,
    idle: Vec<bool>,
    ended: Vec<bool>,
    /// The last combined watermark passed on.
    emitted: EventTime,
    /// Idleness has been passed on and nothing since ended it.
    idle_sent: bool,
    /// How many inputs are idle (a record checks this before anything else).
    n_idle: usize,
}

impl InputWatermarks {
    /// `n` inputs, none heard from yet.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            marks: vec![EventTime::MIN; n],
            idle: vec![false; n],
            ended: vec![false; n],
            emitted: EventTime::MIN,
            idle_sent: false,
            n_idle: 0,
        }
    }

    /// Input `i` sent `watermark`.
    pub(crate) fn on_watermark(&mut self, i: usize, watermark: EventTime) -> Combined {
        self.wake(i);
        if watermark > self.marks[i] {
            self.marks[i] = watermark;
        }
        self.combine()
    }

    /// Input `i` sent a record: if it was idle, it counts again. Costs the caller one check
    /// per record while nothing is idle.
    #[inline]
    pub(crate) fn on_record(&mut self, i: usize) {
        if self.n_idle > 0 || self.idle_sent {
            self.wake(i);
        }
    }

    /// Input `i` reported idleness.
    pub(crate) fn on_idle(&mut self, i: usize) -> Combined {
        if !self.idle[i] && !self.ended[i] {
            self.idle[i] = true;
            self.n_idle += 1;
        }
        self.combine()
    }

    /// Input `i` ended: it holds nothing back any more.
    pub(crate) fn on_end(&mut self, i: usize) -> Combined {
        if self.idle[i] {
            self.idle[i] = false;
            self.n_idle -= 1;
        }
        self.ended[i] = true;
        // No idleness for an input that has nothing left at all: its end follows.
        if self.ended.iter().all(|e| *e) {
            return Combined::Same;
        }
        self.combine()
    }

    fn wake(&mut self, i: usize) {
        if self.idle[i] {
            self.idle[i] = false;
            self.n_idle -= 1;
        }
        // Downstream learns that this point is active again from whatever follows.
        self.idle_sent = false;
    }

    fn combine(&mut self) -> Combined {
        let min = (0..self.marks.len())
            .filter(|&i| !self.idle[i] && !self.ended[i])
            .map(|i| self.marks[i])
            .min();
        match min {
            None => {
                let max = (0..self.marks.len())
                    .filter(|&i| !self.ended[i])
                    .map(|i| self.marks[i])
                    .max()
                    .filter(|m| *m > self.emitted);
                if let Some(m) = max {
                    self.emitted = m;
                } else if self.idle_sent {
                    return Combined::Same;
                }
                self.idle_sent = true;
                Combined::Idle(max)
            }
            Some(m) if m > self.emitted => {
                self.emitted = m;
                self.idle_sent = false;
                Combined::Rose(m)
            }
            Some(_) => Combined::Same,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_of_the_inputs_is_passed_on_when_it_rises() {
        let mut w = InputWatermarks::new(2);
        assert_eq!(
            w.on_watermark(0, 10),
            Combined::Same,
            "input 1 holds it back"
        );
        assert_eq!(w.on_watermark(1, 5), Combined::Rose(5));
        assert_eq!(w.on_watermark(1, 20), Combined::Rose(10));
        assert_eq!(w.on_watermark(1, 30), Combined::Same);
        assert_eq!(w.on_watermark(0, 25), Combined::Rose(25));
    }

    #[test]
    fn an_idle_input_stops_holding_back_and_rejoins_without_lowering_it() {
        let mut w = InputWatermarks::new(2);
        w.on_watermark(0, 100);
        assert_eq!(w.on_idle(1), Combined::Rose(100));
        assert_eq!(w.on_watermark(0, 150), Combined::Rose(150));
        // Input 1 comes back behind: nothing falls, and it holds back the next rise.
        assert_eq!(w.on_watermark(1, 120), Combined::Same);
        assert_eq!(w.on_watermark(0, 200), Combined::Same);
        assert_eq!(w.on_watermark(1, 180), Combined::Rose(180));
    }

    #[test]
    fn idleness_is_passed_on_once_when_every_input_is_idle_and_a_record_ends_it() {
        let mut w = InputWatermarks::new(2);
        assert_eq!(w.on_idle(0), Combined::Same, "input 1 was never heard from");
        assert_eq!(w.on_idle(1), Combined::Idle(None));
        assert_eq!(w.on_idle(1), Combined::Same);
        w.on_record(0);
        assert_eq!(
            w.on_idle(0),
            Combined::Idle(None),
            "idle again after the record"
        );
    }

    #[test]
    fn when_the_last_input_goes_idle_the_highest_idle_watermark_is_passed_on() {
        // Input 0 promised 100 and went idle while input 1 (nothing yet) held it back; then
        // input 1 goes idle too: 100 still holds, and nothing active can be overtaken.
        let mut w = InputWatermarks::new(2);
        assert_eq!(w.on_watermark(0, 100), Combined::Same);
        assert_eq!(w.on_idle(0), Combined::Same);
        assert_eq!(w.on_idle(1), Combined::Idle(Some(100)));
        // Input 1 comes back behind: nothing falls.
        assert_eq!(w.on_watermark(1, 50), Combined::Same);
        assert_eq!(w.on_watermark(1, 150), Combined::Rose(150));
    }

    #[test]
    fn an_ended_input_is_left_out() {
        let mut w = InputWatermarks::new(3);
        w.on_watermark(0, 7);
        w.on_watermark(1, 9);
        assert_eq!(w.on_end(2), Combined::Rose(7));
        assert_eq!(w.on_end(0), Combined::Rose(9));
        assert_eq!(w.on_end(1), Combined::Same);
    }
}
