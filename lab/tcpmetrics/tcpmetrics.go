// Package tcpmetrics reads and flushes the kernel's TCP metrics cache of a
// network namespace: the "tcp_metrics" generic netlink family behind
// `ip tcp_metrics show` and `ip tcp_metrics flush`.
//
// The lab cares about it because this is where a TCP Fast Open client caches
// the server's cookie per destination (fo_cookie, fo_mss, fo_syn_drops). A
// test that wants a cold first connect flushes the cache; a test that wants
// to know whether a cookie was learned reads it back.
//
// Every call opens its own netlink socket already bound to the target
// namespace (netlink.Config.NetNS), so no OS thread is ever switched here.
package tcpmetrics

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Constants from the kernel UAPI header include/uapi/linux/tcp_metrics.h;
// golang.org/x/sys/unix (v0.49.0) does not define any of them.
const (
	genlName    = "tcp_metrics" // TCP_METRICS_GENL_NAME
	genlVersion = 1             // TCP_METRICS_GENL_VERSION

	cmdGet = 1 // TCP_METRICS_CMD_GET
	cmdDel = 2 // TCP_METRICS_CMD_DEL

	attrAddrIPv4      = 1  // TCP_METRICS_ATTR_ADDR_IPV4, be32
	attrAddrIPv6      = 2  // TCP_METRICS_ATTR_ADDR_IPV6, 16 bytes
	attrAge           = 3  // TCP_METRICS_ATTR_AGE, u64 msecs (nla_put_msecs)
	attrTWTSVal       = 4  // TCP_METRICS_ATTR_TW_TSVAL, gone since Linux 4.10
	attrTWTSStamp     = 5  // TCP_METRICS_ATTR_TW_TS_STAMP, gone since Linux 4.10
	attrVals          = 6  // TCP_METRICS_ATTR_VALS, nested u32, type = metric index + 1
	attrFOpenMSS      = 7  // TCP_METRICS_ATTR_FOPEN_MSS, u16
	attrFOpenSynDrops = 8  // TCP_METRICS_ATTR_FOPEN_SYN_DROPS, u16
	attrFOpenSynDropT = 9  // TCP_METRICS_ATTR_FOPEN_SYN_DROP_TS, u64 msecs age
	attrFOpenCookie   = 10 // TCP_METRICS_ATTR_FOPEN_COOKIE, binary, only when cached
	attrSAddrIPv4     = 11 // TCP_METRICS_ATTR_SADDR_IPV4, be32
	attrSAddrIPv6     = 12 // TCP_METRICS_ATTR_SADDR_IPV6, 16 bytes
	attrPad           = 13 // TCP_METRICS_ATTR_PAD
)

// metricNames maps enum tcp_metric_index (the nested attribute type minus
// one) to the names ip(8) uses. The two _us entries are what the kernel
// really stores; "rtt" and "rttvar" are the same values divided by 1000.
var metricNames = [...]string{
	"rtt",        // TCP_METRIC_RTT, ms, scaled by 8 like srtt
	"rttvar",     // TCP_METRIC_RTTVAR, ms, scaled by 4 like mdev
	"ssthresh",   // TCP_METRIC_SSTHRESH
	"cwnd",       // TCP_METRIC_CWND
	"reordering", // TCP_METRIC_REORDERING
	"rtt_us",     // TCP_METRIC_RTT_US, us, scaled by 8
	"rttvar_us",  // TCP_METRIC_RTTVAR_US, us, scaled by 4
}

// opTimeout bounds every netlink exchange so a wedged socket cannot hang a
// test run.
const opTimeout = 10 * time.Second

// Entry is one destination's cached metrics.
type Entry struct {
	Dst                netip.Addr        // TCP_METRICS_ATTR_ADDR_IPV4 or _IPV6
	Src                netip.Addr        // TCP_METRICS_ATTR_SADDR_*, zero if absent
	Age                time.Duration     // TCP_METRICS_ATTR_AGE: time since the entry was last refreshed
	FastOpenMSS        uint16            // TCP_METRICS_ATTR_FOPEN_MSS, 0 if absent
	FastOpenCookie     []byte            // TCP_METRICS_ATTR_FOPEN_COOKIE, nil when none cached
	FastOpenSynDrops   uint16            // TCP_METRICS_ATTR_FOPEN_SYN_DROPS, 0 if absent
	FastOpenSynDropAge time.Duration     // TCP_METRICS_ATTR_FOPEN_SYN_DROP_TS: time since the last drop, 0 if absent
	Values             map[string]uint32 // TCP_METRICS_ATTR_VALS as sent (see RTT), keyed rtt, rttvar, ssthresh, cwnd, reordering, rtt_us, rttvar_us; unknown ones metric_N
}

// RTT returns the cached smoothed RTT the way ip(8) prints it: the kernel
// keeps srtt scaled by 8 in microseconds (rtt_us); older kernels only sent
// the millisecond value (rtt). Zero when the kernel has none.
func (e Entry) RTT() time.Duration {
	if v, ok := e.Values["rtt_us"]; ok {
		return time.Duration(v>>3) * time.Microsecond
	}
	return time.Duration(uint64(e.Values["rtt"])*1000>>3) * time.Microsecond
}

// RTTVar returns the cached RTT variance the way ip(8) prints it (the kernel
// keeps it scaled by 4). Zero when the kernel has none.
func (e Entry) RTTVar() time.Duration {
	if v, ok := e.Values["rttvar_us"]; ok {
		return time.Duration(v>>2) * time.Microsecond
	}
	return time.Duration(uint64(e.Values["rttvar"])*1000>>2) * time.Microsecond
}

// String renders e as one line in the format and field order of
// `ip tcp_metrics show` (iproute2 4.x and later), for example
//
//	10.34.2.2 age 1.200sec cwnd 10 rtt 432us rttvar 399us fo_mss 1460 fo_syn_drops 1/0.500sec ago fo_cookie 2cc5086de402d86a source 10.34.1.2
func (e Entry) String() string {
	var b strings.Builder
	b.WriteString(e.Dst.String())
	fmt.Fprintf(&b, " age %ssec", fmtMillis(e.Age))

	// ip(8) prints the plain metrics in index order, then rtt and rttvar
	// converted to microseconds.
	for i, name := range metricNames {
		if i == 0 || i == 1 || i == 5 || i == 6 {
			continue
		}
		if v, ok := e.Values[name]; ok {
			fmt.Fprintf(&b, " %s %d", name, v)
		}
	}
	for _, name := range unknownMetricNames(e.Values) {
		fmt.Fprintf(&b, " %s %d", name, e.Values[name])
	}
	if rtt := e.RTT(); rtt > 0 {
		fmt.Fprintf(&b, " rtt %dus", rtt.Microseconds())
	}
	if v := e.RTTVar(); v > 0 {
		fmt.Fprintf(&b, " rttvar %dus", v.Microseconds())
	}

	if e.FastOpenMSS != 0 {
		fmt.Fprintf(&b, " fo_mss %d", e.FastOpenMSS)
	}
	if e.FastOpenSynDrops != 0 {
		fmt.Fprintf(&b, " fo_syn_drops %d/%ssec ago", e.FastOpenSynDrops, fmtMillis(e.FastOpenSynDropAge))
	}
	if len(e.FastOpenCookie) > 0 {
		fmt.Fprintf(&b, " fo_cookie %s", hex.EncodeToString(e.FastOpenCookie))
	}
	if e.Src.IsValid() {
		fmt.Fprintf(&b, " source %s", e.Src)
	}
	return b.String()
}

// fmtMillis formats d as ip(8) does: whole seconds, a dot, three digits of
// milliseconds.
func fmtMillis(d time.Duration) string {
	ms := d.Milliseconds()
	return fmt.Sprintf("%d.%03d", ms/1000, ms%1000)
}

// unknownMetricNames returns the metric_N keys of vals sorted by N.
func unknownMetricNames(vals map[string]uint32) []string {
	var idx []int
	for k := range vals {
		if n, ok := strings.CutPrefix(k, "metric_"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				idx = append(idx, i)
			}
		}
	}
	slices.Sort(idx)
	names := make([]string, len(idx))
	for j, i := range idx {
		names[j] = "metric_" + strconv.Itoa(i)
	}
	return names
}

// Dump returns every entry the kernel caches for the namespace ns.
func Dump(ns netns.NsHandle) ([]Entry, error) {
	msgs, err := execute(ns, genetlink.Message{Header: genetlink.Header{Command: cmdGet, Version: genlVersion}},
		netlink.Request|netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("tcp_metrics dump in netns %v: %w", ns, err)
	}
	entries := make([]Entry, 0, len(msgs))
	for i, m := range msgs {
		if m.Header.Command != cmdGet {
			continue
		}
		e, err := decodeEntry(m.Data)
		if err != nil {
			return nil, fmt.Errorf("tcp_metrics dump in netns %v: message %d: %w", ns, i, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// Get returns the cached entry for dst in the namespace ns. found is false,
// with a nil error, when the kernel has no entry for dst. If the cache holds
// entries for dst from several source addresses the kernel returns one of
// them; use Dump to see all. An IPv4-mapped IPv6 dst is looked up as IPv4,
// which is how the kernel stores such connections.
func Get(ns netns.NsHandle, dst netip.Addr) (e Entry, found bool, err error) {
	if !dst.IsValid() {
		return Entry{}, false, fmt.Errorf("tcp_metrics get in netns %v: invalid destination address", ns)
	}
	dst = dst.Unmap()
	ae := netlink.NewAttributeEncoder()
	if dst.Is4() {
		a := dst.As4()
		ae.Bytes(attrAddrIPv4, a[:])
	} else {
		a := dst.As16()
		ae.Bytes(attrAddrIPv6, a[:])
	}
	data, err := ae.Encode()
	if err != nil {
		return Entry{}, false, fmt.Errorf("tcp_metrics get %s in netns %v: encode request: %w", dst, ns, err)
	}

	msgs, err := execute(ns, genetlink.Message{Header: genetlink.Header{Command: cmdGet, Version: genlVersion}, Data: data},
		netlink.Request)
	if errors.Is(err, unix.ESRCH) {
		// tcp_metrics_nl_cmd_get answers ESRCH when nothing matches.
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("tcp_metrics get %s in netns %v: %w", dst, ns, err)
	}
	for _, m := range msgs {
		if m.Header.Command != cmdGet {
			continue
		}
		e, err := decodeEntry(m.Data)
		if err != nil {
			return Entry{}, false, fmt.Errorf("tcp_metrics get %s in netns %v: %w", dst, ns, err)
		}
		return e, true, nil
	}
	return Entry{}, false, fmt.Errorf("tcp_metrics get %s in netns %v: kernel sent no entry and no error", dst, ns)
}

// Flush removes every entry of the namespace ns (TCP_METRICS_CMD_DEL without
// an address, what `ip tcp_metrics flush` sends). Flushing an empty cache is
// not an error. Needs CAP_NET_ADMIN over ns.
func Flush(ns netns.NsHandle) error {
	_, err := execute(ns, genetlink.Message{Header: genetlink.Header{Command: cmdDel, Version: genlVersion}},
		netlink.Request|netlink.Acknowledge)
	if err != nil {
		return fmt.Errorf("tcp_metrics flush in netns %v: %w", ns, err)
	}
	return nil
}

// execute runs one request/response exchange on a fresh generic netlink
// socket bound to ns and closes the socket before returning.
func execute(ns netns.NsHandle, m genetlink.Message, flags netlink.HeaderFlags) (msgs []genetlink.Message, err error) {
	// NetNS 0 would silently mean "the calling thread's namespace" to
	// mdlayher/netlink, which is almost never what a caller holding a
	// handle wants (and -1 is netns.None()).
	if ns <= 0 {
		return nil, fmt.Errorf("invalid netns handle %d", int(ns))
	}
	c, err := genetlink.Dial(&netlink.Config{NetNS: int(ns)})
	if err != nil {
		return nil, fmt.Errorf("dial generic netlink: %w", err)
	}
	defer func() {
		if cerr := c.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close generic netlink: %w", cerr)
		}
	}()
	if err := c.SetDeadline(time.Now().Add(opTimeout)); err != nil {
		return nil, fmt.Errorf("set netlink deadline: %w", err)
	}
	fam, err := c.GetFamily(genlName)
	if err != nil {
		return nil, fmt.Errorf("resolve generic netlink family %q: %w", genlName, err)
	}
	msgs, err = c.Execute(m, fam.ID, flags)
	if err != nil {
		return nil, err
	}
	return msgs, nil
}

// decodeEntry decodes the attributes of one TCP_METRICS_CMD_GET message (the
// bytes after the genetlink header) as tcp_metrics_fill_info writes them.
// Unknown attributes are ignored; malformed ones are an error.
func decodeEntry(b []byte) (Entry, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Entry{}, fmt.Errorf("decode tcp_metrics attributes: %w", err)
	}
	var (
		e          Entry
		dst4, dst6 netip.Addr
		src4, src6 netip.Addr
		cookie     bool
	)
	for ad.Next() {
		switch ad.Type() {
		case attrAddrIPv4:
			ad.Do(addrInto(&dst4, 4))
		case attrAddrIPv6:
			ad.Do(addrInto(&dst6, 16))
		case attrSAddrIPv4:
			ad.Do(addrInto(&src4, 4))
		case attrSAddrIPv6:
			ad.Do(addrInto(&src6, 16))
		case attrAge:
			e.Age = millis(ad.Uint64())
		case attrVals:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				e.Values = make(map[string]uint32)
				for nad.Next() {
					if nad.Type() == 0 {
						continue // unspec, never sent
					}
					e.Values[metricName(nad.Type())] = nad.Uint32()
				}
				return nil // Nested reports nad.Err itself
			})
		case attrFOpenMSS:
			e.FastOpenMSS = ad.Uint16()
		case attrFOpenSynDrops:
			e.FastOpenSynDrops = ad.Uint16()
		case attrFOpenSynDropT:
			e.FastOpenSynDropAge = millis(ad.Uint64())
		case attrFOpenCookie:
			cookie = true
			e.FastOpenCookie = ad.Bytes()
		default:
			// attrPad, the long-gone TW_TS* pair and anything a newer kernel
			// adds: not part of Entry.
		}
	}
	if err := ad.Err(); err != nil {
		return Entry{}, fmt.Errorf("decode tcp_metrics attributes: %w", err)
	}
	if cookie && len(e.FastOpenCookie) == 0 {
		e.FastOpenCookie = nil // keep "nil when none cached" exact
	}
	// Prefer IPv4 like ip(8) does; the kernel never sends both.
	switch {
	case dst4.IsValid():
		e.Dst = dst4
	case dst6.IsValid():
		e.Dst = dst6
	default:
		return Entry{}, errors.New("decode tcp_metrics attributes: no destination address (TCP_METRICS_ATTR_ADDR_IPV4/IPV6)")
	}
	if src4.IsValid() {
		e.Src = src4
	} else {
		e.Src = src6
	}
	return e, nil
}

// addrInto returns an AttributeDecoder.Do callback that stores an address
// attribute of exactly n bytes (network byte order) in *dst.
func addrInto(dst *netip.Addr, n int) func([]byte) error {
	return func(b []byte) error {
		if len(b) != n {
			return fmt.Errorf("address attribute has %d bytes, want %d", len(b), n)
		}
		a, _ := netip.AddrFromSlice(b) // cannot fail: len is 4 or 16
		*dst = a
		return nil
	}
}

// metricName names nested attribute type t (tcp_metric_index + 1).
func metricName(t uint16) string {
	if i := int(t) - 1; i >= 0 && i < len(metricNames) {
		return metricNames[i]
	}
	return "metric_" + strconv.Itoa(int(t)-1)
}

// millis converts a kernel msecs value to a Duration, saturating instead of
// overflowing (jiffies arithmetic can produce absurd values after wrap).
func millis(ms uint64) time.Duration {
	if ms > uint64(math.MaxInt64/int64(time.Millisecond)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ms) * time.Millisecond
}
