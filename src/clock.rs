//! Wall-clock timestamps as the API shows them: RFC 3339 UTC with microseconds for JSON bodies,
//! IMF-fixdate for the HTTP `Date` header. Formatting is done by hand into fixed-size arrays so the
//! hot path allocates nothing and pulls in no date crate.

use std::cell::Cell;
use std::thread::LocalKey;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, UTC. The one representation of a point in wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp(pub u64);

/// Length of an RFC 3339 timestamp as written by [`Timestamp::rfc3339`]: `2026-11-26T10:30:00.123456Z`.
pub const RFC3339_LEN: usize = 27;
/// Length of an IMF-fixdate: `Thu, 26 Nov 2026 10:30:00 GMT`.
pub const HTTP_DATE_LEN: usize = 29;

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_secs() * 1_000_000 + u64::from(d.subsec_micros()))
    }

    /// Whole milliseconds from `self` to `later` (0 if `later` is earlier).
    pub fn millis_until(self, later: Timestamp) -> u64 {
        later.0.saturating_sub(self.0) / 1000
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`. The part up to the seconds is cached per thread for the
    /// last second formatted (timestamps of one request are in the same second, and a request
    /// writes two).
    pub fn rfc3339(self) -> [u8; RFC3339_LEN] {
        let secs = self.0 / 1_000_000;
        let micros = (self.0 % 1_000_000) as u32;
        let mut out = per_second(&RFC3339_CACHE, secs, || rfc3339_seconds(secs));
        put_digits(&mut out[20..26], micros);
        out
    }

    /// `Day, DD Mon YYYY HH:MM:SS GMT` (RFC 9110 §5.6.7).
    pub fn http_date(self) -> [u8; HTTP_DATE_LEN] {
        const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let secs = self.0 / 1_000_000;
        let days = secs / 86_400;
        let (y, mo, d) = civil_from_days(days as i64);
        let sod = (secs % 86_400) as u32;
        let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
        out[0..3].copy_from_slice(DAYS[(days % 7) as usize]);
        put_digits(&mut out[5..7], d);
        out[8..11].copy_from_slice(MONTHS[(mo - 1) as usize]);
        put_digits(&mut out[12..16], y as u32);
        put_digits(&mut out[17..19], sod / 3600);
        put_digits(&mut out[20..22], sod / 60 % 60);
        put_digits(&mut out[23..25], sod % 60);
        out
    }
}

impl Timestamp {
    /// An HTTP-date (RFC 9110 §5.6.7) in any of its three forms: IMF-fixdate
    /// (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form (`Sunday, 06-Nov-94
    /// 08:49:37 GMT`, its two-digit year the one within 50 years of `now`, never more than 50
    /// years ahead)
    /// and asctime (`Sun Nov  6 08:49:37 1994`). `None` for anything else.
    pub fn parse_http_date(text: &str, now: Timestamp) -> Option<Timestamp> {
        let t = text.trim().as_bytes();
        let (year, month, day, time) = if let Some(comma) = t.iter().position(|&b| b == b',') {
            let rest = t.get(comma + 1..)?.strip_prefix(b" ")?.strip_suffix(b" GMT")?;
            match rest {
                [d0, d1, b' ', m @ .., b' ', y0, y1, y2, y3, b' ', _, _, b':', _, _, b':', _, _]
                    if m.len() == 3 =>
                {
                    let year = number(&[*y0, *y1, *y2, *y3])?;
                    (year, month(m)?, number(&[*d0, *d1])?, &rest[rest.len() - 8..])
                }
                [d0, d1, b'-', m0, m1, m2, b'-', y0, y1, b' ', _, _, b':', _, _, b':', _, _] => {
                    let yy = number(&[*y0, *y1])?;
                    let (this_year, _, _) = civil_from_days((now.0 / 86_400_000_000) as i64);
                    // The year with those two digits within 50 years of now, the future on a tie.
                    let mut year = this_year as u32 / 100 * 100 + yy;
                    if i64::from(year) > this_year + 50 {
                        year -= 100;
                    } else if i64::from(year) <= this_year - 50 {
                        year += 100;
                    }
                    (year, month(&[*m0, *m1, *m2])?, number(&[*d0, *d1])?, &rest[10..])
                }
                _ => return None,
            }
        } else {
            match t {
                [_, _, _, b' ', m0, m1, m2, b' ', d0, d1, b' ', _, _, b':', _, _, b':', _, _, b' ', y0, y1, y2, y3] => {
                    let day = if *d0 == b' ' { number(&[*d1])? } else { number(&[*d0, *d1])? };
                    let year = number(&[*y0, *y1, *y2, *y3])?;
                    (year, month(&[*m0, *m1, *m2])?, day, &t[11..19])
                }
                _ => return None,
            }
        };
        let (h, m, s) = (number(&time[0..2])?, number(&time[3..5])?, number(&time[6..8])?);
        if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || year < 1970 {
            return None;
        }
        let days = days_from_civil(i64::from(year), month, day) as u64;
        let secs = days * 86_400 + u64::from(h * 3600 + m * 60 + s.min(59));
        Some(Timestamp(secs * 1_000_000))
    }
}

/// The value of 1 to 4 ASCII digits.
fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// A month's three-letter name (case-sensitive, as RFC 9110 writes them) to 1..=12.
fn month(name: &[u8]) -> Option<u32> {
    const NAMES: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    NAMES.iter().position(|&n| n == name).map(|i| i as u32 + 1)
}

thread_local! {
    static DATE_CACHE: Cell<(u64, [u8; HTTP_DATE_LEN])> = const { Cell::new((u64::MAX, [0; HTTP_DATE_LEN])) };
    static RFC3339_CACHE: Cell<(u64, [u8; RFC3339_LEN])> = const { Cell::new((u64::MAX, [0; RFC3339_LEN])) };
}

/// `YYYY-MM-DDTHH:MM:SS.000000Z` for whole seconds since the epoch.
fn rfc3339_seconds(secs: u64) -> [u8; RFC3339_LEN] {
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let sod = (secs % 86_400) as u32;
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut out[0..4], y as u32);
    put_digits(&mut out[5..7], mo);
    put_digits(&mut out[8..10], d);
    put_digits(&mut out[11..13], sod / 3600);
    put_digits(&mut out[14..16], sod / 60 % 60);
    put_digits(&mut out[17..19], sod % 60);
    out
}

/// The `Date` header value for now, formatted at most once per second per thread.
pub fn http_date_now() -> [u8; HTTP_DATE_LEN] {
    let now = Timestamp::now();
    per_second(&DATE_CACHE, now.0 / 1_000_000, || now.http_date())
}

/// The text `format` gives for second `sec`, from `cache` when it holds that second's.
fn per_second<const N: usize>(
    cache: &'static LocalKey<Cell<(u64, [u8; N])>>,
    sec: u64,
    format: impl FnOnce() -> [u8; N],
) -> [u8; N] {
    cache.with(|c| {
        let (cached, text) = c.get();
        if cached == sec {
            return text;
        }
        let text = format();
        c.set((sec, text));
        text
    })
}

fn put_digits(out: &mut [u8], mut v: u32) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of (year, month, day), Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let cases: &[(u64, &str, &str)] = &[
            (
                0,
                "1970-01-01T00:00:00.000000Z",
                "Thu, 01 Jan 1970 00:00:00 GMT",
            ),
            (
                951_782_400_000_001,
                "2000-02-29T00:00:00.000001Z",
                "Tue, 29 Feb 2000 00:00:00 GMT",
            ),
            (
                1_795_689_000_123_456,
                "2026-11-26T10:30:00.123456Z",
                "Thu, 26 Nov 2026 10:30:00 GMT",
            ),
            (
                4_102_444_799_999_999,
                "2099-12-31T23:59:59.999999Z",
                "Thu, 31 Dec 2099 23:59:59 GMT",
            ),
        ];
        for &(micros, rfc, http) in cases {
            let t = Timestamp(micros);
            assert_eq!(std::str::from_utf8(&t.rfc3339()).unwrap(), rfc);
            assert_eq!(std::str::from_utf8(&t.http_date()).unwrap(), http);
        }
    }

    #[test]
    fn rfc3339_cache_keeps_only_the_seconds() {
        // Same second, other microseconds; then another second and back: each is exact.
        let text = |t: u64| String::from_utf8(Timestamp(t).rfc3339().to_vec()).unwrap();
        assert_eq!(text(1_795_689_000_000_007), "2026-11-26T10:30:00.000007Z");
        assert_eq!(text(1_795_689_000_999_999), "2026-11-26T10:30:00.999999Z");
        assert_eq!(text(1_795_689_001_000_000), "2026-11-26T10:30:01.000000Z");
        assert_eq!(text(1_795_689_000_000_001), "2026-11-26T10:30:00.000001Z");
    }

    #[test]
    fn http_dates_parse_in_all_three_forms() {
        let now = Timestamp(1_795_689_000_000_000); // 2026-11-26
        let sunday = Some(Timestamp(784_111_777_000_000));
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            " Sun, 06 Nov 1994 08:49:37 GMT ",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(Timestamp::parse_http_date(text, now), sunday, "{text:?}");
        }
        // A two-digit year up to 50 years ahead stays in this century; further, the one before.
        let jan1 = |text: &str, now| Timestamp::parse_http_date(text, now).map(|t| t.http_date());
        assert_eq!(
            jan1("Thursday, 01-Jan-70 00:00:00 GMT", now),
            Some(*b"Wed, 01 Jan 2070 00:00:00 GMT")
        );
        assert_eq!(
            jan1("Thursday, 01-Jan-77 00:00:00 GMT", now),
            Some(*b"Sat, 01 Jan 1977 00:00:00 GMT")
        );
        // From 2060, "10" is 2110, not 2010.
        let in_2060 = Timestamp(2_840_140_800_000_000);
        assert_eq!(
            jan1("Friday, 01-Jan-10 00:00:00 GMT", in_2060),
            Some(*b"Wed, 01 Jan 2110 00:00:00 GMT")
        );
        // What the formatter writes parses back, across leap days and centuries.
        for micros in [0, 951_782_400_000_000, 1_795_689_000_000_000, 4_102_444_799_000_000] {
            let t = Timestamp(micros);
            let text = String::from_utf8(t.http_date().to_vec()).unwrap();
            assert_eq!(Timestamp::parse_http_date(&text, now), Some(t), "{text}");
        }
        for bad in [
            "",
            "120",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 0x Nov 1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
        ] {
            assert_eq!(Timestamp::parse_http_date(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn millis_until_saturates() {
        assert_eq!(Timestamp(5_000).millis_until(Timestamp(17_999)), 12);
        assert_eq!(Timestamp(17_999).millis_until(Timestamp(5_000)), 0);
    }
}
