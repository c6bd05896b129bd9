//! A TCP stream that knows when the kernel received what it reads (`SO_TIMESTAMPNS`).
//!
//! The load generator judges the bridge by when its audio *arrived*: a gap in a bot turn is a
//! dropped frame only if the playout buffer really ran dry before the next frame came in.
//! Measured at the moment the generator got round to reading the socket, a generator that is
//! busy (one core for a thousand callers) would charge its own delay to the bridge. The
//! kernel stamps each segment as it is received; after every read this stream keeps the
//! stamp of the newest segment read, as an [`Instant`] on the monotonic clock.
//!
//! The stamp is per kernel buffer, and TCP merges segments that wait unread into the buffer
//! before them, giving the merged buffer the newest segment's stamp. So messages read
//! together, or left waiting while the reader was stalled, all carry the newest arrival: never
//! earlier than the truth, so lateness can only be over-counted, but a reader stalled for
//! longer than a frame still over-counts by up to its stall. Stamps remove the reader's
//! scheduling delay for messages read as they come, not a long stall. Where the socket option
//! is refused, or a read carries no stamp, callers fall back to their own clock.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream whose reads record the kernel's receive time.
#[derive(Debug)]
pub struct StampedTcp {
    inner: TcpStream,
    /// Room for one `SCM_TIMESTAMPNS` control message.
    control: Vec<u8>,
    stamps: bool,
    last_arrival: Option<Instant>,
}

impl StampedTcp {
    /// Wraps `inner`, asking the kernel for receive timestamps.
    pub fn new(inner: TcpStream) -> Self {
        let stamps = setsockopt(&inner, sockopt::ReceiveTimestampns, &true).is_ok();
        if !stamps {
            tracing::debug!("SO_TIMESTAMPNS refused: arrival times fall back to read times");
        }
        Self {
            inner,
            control: nix::cmsg_space!(nix::libc::timespec),
            stamps,
            last_arrival: None,
        }
    }

    /// When the kernel received the newest bytes of the last read (`None` when that read
    /// carried no stamp, or stamps are not available).
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }
}

/// A `CLOCK_REALTIME` stamp as a point on the monotonic clock: `now - (wall now - stamp)`.
fn to_instant(stamp: TimeSpec) -> Option<Instant> {
    let secs = u64::try_from(stamp.tv_sec()).ok()?;
    let nanos = u32::try_from(stamp.tv_nsec()).ok()?;
    let received = UNIX_EPOCH + Duration::new(secs, nanos);
    let (wall, mono) = (SystemTime::now(), Instant::now());
    let age = wall.duration_since(received).unwrap_or(Duration::ZERO);
    mono.checked_sub(age)
}

impl AsyncRead for StampedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.stamps {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            let fd = this.inner.as_raw_fd();
            let control = &mut this.control;
            let unfilled = buf.initialize_unfilled();
            let read = this.inner.try_io(Interest::READABLE, || {
                let mut iov = [io::IoSliceMut::new(unfilled)];
                let message = recvmsg::<()>(fd, &mut iov, Some(control), MsgFlags::empty())
                    .map_err(io::Error::from)?;
                let stamp = message.cmsgs().ok().and_then(|mut cmsgs| {
                    cmsgs.find_map(|c| match c {
                        ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
                        _ => None,
                    })
                });
                Ok((message.bytes, stamp))
            });
            match read {
                Ok((n, stamp)) => {
                    // A read without a stamp (none yet, or the control data was cut short)
                    // must not inherit an older read's time: callers fall back to their own.
                    this.last_arrival = stamp.and_then(to_instant);
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for StampedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn reads_carry_the_time_the_kernel_received_them() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        let mut reader = StampedTcp::new(client.unwrap());
        let (mut writer, _) = accepted.unwrap();
        assert!(reader.last_arrival().is_none());
        // The kernel turns receive stamping on from a background worker the first time any
        // socket asks, so the very first segments may go unstamped: poll until one is.
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            writer.write_all(b"w").await.unwrap();
            let _ = reader.read(&mut buf).await.unwrap();
            if reader.last_arrival().is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "loopback TCP reads are never stamped"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }

        let sent = Instant::now();
        writer.write_all(b"first").await.unwrap();
        // Wait until the bytes are in the socket's buffer, then keep the reader busy for
        // `stall` before it reads: a stamp taken at the read would be at least `stall` after
        // `readable_at`, the kernel's arrival stamp is before it. (The stall is the stimulus
        // under test, not a wait for a condition.)
        let stall = Duration::from_millis(50);
        reader.inner.readable().await.unwrap();
        let readable_at = Instant::now();
        tokio::time::sleep(stall).await;
        let n = reader.read(&mut buf).await.unwrap();
        let read_at = Instant::now();
        assert_eq!(&buf[..n], b"first");
        let arrival = reader
            .last_arrival()
            .expect("loopback TCP is stamped on Linux");
        // The stamp is on the wall clock, moved onto the monotonic one: allow 2 ms for that.
        let margin = Duration::from_millis(2);
        assert!(arrival + margin >= sent, "not before the send");
        assert!(
            arrival <= readable_at + margin,
            "stamped {:?} after the bytes were already readable",
            arrival.duration_since(readable_at)
        );
        assert!(
            read_at.duration_since(arrival) >= stall,
            "stamped at arrival, {:?} before the read",
            read_at.duration_since(arrival)
        );

        // Writing through the wrapper reaches the peer.
        reader.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        writer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }
}
