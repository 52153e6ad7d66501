//! The daemon's log lines, written to stderr by a thread of their own, in batches.
//!
//! Every change the daemon makes is logged. Under load (a UPnP client adding and deleting
//! mappings as fast as it can) one `write(2)` per line into a pipe or journald's stream socket,
//! each waking the reader, cost the runtime thread about as much as the change itself. Here the
//! runtime thread only appends the formatted line to a buffer. The writer thread, woken by the
//! first line of a batch, waits [`GATHER`] for the lines that follow and writes them all with one
//! call. Lines keep their order and reach stderr at most a few milliseconds late.
//!
//! The daemon never stalls on its log: if stderr blocks (a reader that stopped reading), at most
//! [`MAX_PENDING`] bytes wait, later lines are dropped and counted, and a line saying how many
//! goes out once stderr takes data again. [`Guard`] writes what is left when the daemon ends, and
//! a panic writes it before the panic message.

use std::{
    io, mem,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread,
    time::Duration,
};

/// How long the writer thread gathers lines after the first of a batch.
const GATHER: Duration = Duration::from_millis(2);

/// Bytes waiting for stderr beyond which lines are dropped.
const MAX_PENDING: usize = 1 << 20;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Lines dropped since the last batch, the buffer being full.
    dropped: u64,
    /// The writer thread is parked for want of lines (the next line wakes it).
    idle: bool,
    /// The guard is gone: lines go straight to the sink.
    closed: bool,
}

struct Shared<W> {
    pending: Mutex<Pending>,
    wake: Condvar,
    sink: Mutex<W>,
}

impl<W: io::Write> Shared<W> {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what is pending now, on the calling thread.
    fn drain(&self) {
        let (bytes, dropped) = {
            let mut pending = self.pending();
            (
                mem::take(&mut pending.bytes),
                mem::take(&mut pending.dropped),
            )
        };
        self.write(&bytes, dropped);
    }

    fn write(&self, bytes: &[u8], dropped: u64) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        // Errors have nowhere to go: the log is where they would be reported.
        let _ = sink.write_all(bytes);
        if dropped > 0 {
            let _ = writeln!(
                sink,
                "portfwd: {dropped} log lines dropped: stderr did not take them in time"
            );
        }
        let _ = sink.flush();
    }
}

/// The subscriber's writer: see the module's documentation.
pub struct Batched<W> {
    shared: Arc<Shared<W>>,
}

impl<W> Clone for Batched<W> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Ends the writer thread after it wrote everything; lines logged after that are written
/// directly.
#[must_use = "dropping the guard ends batching"]
pub struct Guard<W: io::Write + Send + 'static> {
    shared: Arc<Shared<W>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// Starts the writer thread for `sink`.
pub fn start<W: io::Write + Send + 'static>(sink: W) -> io::Result<(Batched<W>, Guard<W>)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
        sink: Mutex::new(sink),
    });
    let thread = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("portfwd-log".into())
            .spawn(move || run(&shared))?
    };
    Ok((
        Batched {
            shared: Arc::clone(&shared),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run<W: io::Write>(shared: &Shared<W>) {
    let mut spare = Vec::new();
    loop {
        let mut pending = shared.pending();
        while pending.bytes.is_empty() && pending.dropped == 0 && !pending.closed {
            pending.idle = true;
            pending = shared
                .wake
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        pending.idle = false;
        if !pending.closed {
            drop(pending);
            thread::sleep(GATHER);
            pending = shared.pending();
        }
        let closed = pending.closed;
        let dropped = mem::take(&mut pending.dropped);
        mem::swap(&mut pending.bytes, &mut spare);
        drop(pending);
        shared.write(&spare, dropped);
        spare.clear();
        if spare.capacity() > MAX_PENDING / 4 {
            spare = Vec::new();
        }
        if closed {
            return;
        }
    }
}

impl<W: io::Write> io::Write for Batched<W> {
    /// Takes one formatted event (the subscriber writes each event with one `write_all`).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.pending();
        if pending.closed {
            drop(pending);
            self.shared.write(buf, 0);
        } else if pending.bytes.len() + buf.len() > MAX_PENDING {
            pending.dropped += 1;
        } else {
            pending.bytes.extend_from_slice(buf);
            if mem::take(&mut pending.idle) {
                self.shared.wake.notify_one();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: io::Write + 'static> tracing_subscriber::fmt::MakeWriter<'a> for Batched<W> {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl<W: io::Write + Send + 'static> Guard<W> {
    /// Writes what is pending before the panic message, which goes to stderr directly.
    pub fn flush_on_panic(&self) {
        let shared = Arc::clone(&self.shared);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            shared.drain();
            previous(info);
        }));
    }
}

impl<W: io::Write + Send + 'static> Drop for Guard<W> {
    fn drop(&mut self) {
        self.shared.pending().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // A line logged between the thread's last batch and `closed`.
        self.shared.drain();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A sink that records each `write` call, so a test sees how lines were batched.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Vec<u8>>>>);

    impl io::Write for Calls {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Calls {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lock").concat()).expect("utf-8")
        }
        fn count(&self) -> usize {
            self.0.lock().expect("lock").len()
        }
    }

    #[test]
    fn a_burst_of_lines_is_one_write_in_order() {
        let calls = Calls::default();
        let (writer, guard) = start(calls.clone()).expect("thread");
        let lines: Vec<String> = (0..500).map(|i| format!("line {i}\n")).collect();
        for line in &lines {
            writer.clone().write_all(line.as_bytes()).expect("write");
        }
        drop(guard);
        assert_eq!(calls.text(), lines.concat());
        // Logged within the gathering time of the first, 500 lines take a handful of writes
        // (the bound leaves room for a test thread descheduled on a busy machine).
        assert!(calls.count() < 50, "{} writes", calls.count());
    }

    #[test]
    fn lines_reach_the_sink_without_the_guard_ending() {
        let calls = Calls::default();
        let (writer, _guard) = start(calls.clone()).expect("thread");
        writer.clone().write_all(b"ready\n").expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while calls.text().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line never came");
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(calls.text(), "ready\n");
    }

    /// A sink that blocks until released, as a pipe whose reader stopped reading.
    struct Stuck {
        release: Arc<(Mutex<bool>, Condvar)>,
        out: Calls,
    }

    impl io::Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cond) = &*self.release;
            let mut released = lock.lock().expect("lock");
            while !*released {
                released = cond.wait(released).expect("wait");
            }
            self.out.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_stderr_drops_lines_and_says_how_many() {
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let out = Calls::default();
        let (writer, guard) = start(Stuck {
            release: Arc::clone(&release),
            out: out.clone(),
        })
        .expect("thread");
        // The first line takes the thread into the stuck write; the rest fill the buffer.
        writer.clone().write_all(b"first\n").expect("write");
        thread::sleep(GATHER * 5);
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        let lines = MAX_PENDING / line.len() + 100;
        for _ in 0..lines {
            writer.clone().write_all(&line).expect("never blocks");
        }
        {
            let (lock, cond) = &*release;
            *lock.lock().expect("lock") = true;
            cond.notify_all();
        }
        drop(guard);
        let text = out.text();
        assert!(text.starts_with("first\n"), "{}", &text[..20]);
        assert!(
            text.contains(" log lines dropped: stderr did not take them in time"),
            "no note of the dropped lines"
        );
        let kept = text.matches(&*String::from_utf8_lossy(&line)).count();
        assert!(kept > 0 && kept < lines, "kept {kept} of {lines}");
    }
}
