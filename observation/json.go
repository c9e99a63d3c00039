package observation

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/tfolab/tfolab/lab/capture"
)

// FileName is the observation's JSON file in an artefacts folder.
const FileName = "observation.json"

// packetJSON is capture.Packet as JSON: the raw frame lives in the pcap
// beside the JSON (same order), and a decode error is kept as its text.
type packetJSON struct {
	Time        time.Time               `json:"time"`
	Link        string                  `json:"link,omitempty"`
	Src         netip.AddrPort          `json:"src"`
	Dst         netip.AddrPort          `json:"dst"`
	Flags       capture.TCPFlags        `json:"flags"`
	Seq         uint32                  `json:"seq"`
	Ack         uint32                  `json:"ack"`
	Window      uint16                  `json:"window"`
	Urgent      uint16                  `json:"urgent,omitempty"`
	Payload     []byte                  `json:"payload,omitempty"`
	Length      int                     `json:"length"`
	Options     []layers.TCPOption      `json:"options,omitempty"`
	FastOpen    *capture.FastOpenOption `json:"fast_open,omitempty"`
	FastOpenErr string                  `json:"fast_open_error,omitempty"`
	Summary     string                  `json:"summary"`
}

// linkJSON is Link with its packets.
type linkJSON struct {
	Node      string       `json:"node"`
	Interface string       `json:"interface"`
	Packets   []packetJSON `json:"packets"`
	Dropped   uint64       `json:"dropped"`
	Pcap      string       `json:"pcap,omitempty"`
}

// MarshalJSON writes the link with its decoded packets (frames omitted).
func (l Link) MarshalJSON() ([]byte, error) {
	out := linkJSON{Node: l.Node, Interface: l.Interface, Dropped: l.Dropped, Pcap: l.Pcap, Packets: []packetJSON{}}
	for _, p := range l.Packets {
		pj := packetJSON{
			Time: p.Time, Link: p.Link, Src: p.Src, Dst: p.Dst, Flags: p.Flags,
			Seq: p.Seq, Ack: p.Ack, Window: p.Window, Urgent: p.Urgent, Payload: p.Payload,
			Length: p.Length, Options: p.Options, FastOpen: p.FastOpen, Summary: p.String(),
		}
		if p.FastOpenErr != nil {
			pj.FastOpenErr = p.FastOpenErr.Error()
		}
		out.Packets = append(out.Packets, pj)
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (l *Link) UnmarshalJSON(b []byte) error {
	var in linkJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*l = Link{Node: in.Node, Interface: in.Interface, Dropped: in.Dropped, Pcap: in.Pcap}
	for _, pj := range in.Packets {
		p := capture.Packet{
			Time: pj.Time, Link: pj.Link, Src: pj.Src, Dst: pj.Dst, Flags: pj.Flags, Seq: pj.Seq, Ack: pj.Ack, Window: pj.Window,
			Urgent: pj.Urgent, Payload: pj.Payload, Length: pj.Length, Options: pj.Options, FastOpen: pj.FastOpen,
		}
		switch sentinel := capture.ErrMalformedFastOpen.Error(); {
		case pj.FastOpenErr == "":
		case pj.FastOpenErr == sentinel:
			p.FastOpenErr = capture.ErrMalformedFastOpen
		default:
			p.FastOpenErr = fmt.Errorf("%w: %s", capture.ErrMalformedFastOpen, strings.TrimPrefix(pj.FastOpenErr, sentinel+": "))
		}
		l.Packets = append(l.Packets, p)
	}
	return nil
}

// Write writes the observation as dir/observation.json and one pcap per
// link that has frames (dir/<node>_<interface>.pcap), and returns the
// paths written. The JSON records each pcap's name.
func (o *Observation) Write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("artefacts folder: %w", err)
	}
	var paths []string
	for _, k := range o.LinkNames() {
		l := o.Links[k]
		if len(l.Packets) == 0 || l.Packets[0].Frame == nil {
			continue
		}
		name := strings.ReplaceAll(k, "/", "_") + ".pcap"
		if err := WritePcap(filepath.Join(dir, name), l.Packets); err != nil {
			return paths, err
		}
		l.Pcap = name
		paths = append(paths, filepath.Join(dir, name))
	}
	p := filepath.Join(dir, FileName)
	f, err := os.Create(p)
	if err != nil {
		return paths, fmt.Errorf("write observation: %w", err)
	}
	err = o.Encode(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return paths, fmt.Errorf("write %s: %w", p, err)
	}
	return append(paths, p), nil
}

// Encode writes the observation's JSON to w.
func (o *Observation) Encode(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(o)
}

// Read reads dir/observation.json (or the JSON file path itself) and, for
// each link whose pcap is beside it, attaches the raw frames.
func Read(path string) (*Observation, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read observation: %w", err)
	}
	defer f.Close()
	o, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	for k, l := range o.Links {
		if l.Pcap == "" {
			continue
		}
		if err := attachFrames(filepath.Join(filepath.Dir(path), l.Pcap), l.Packets); err != nil {
			return nil, fmt.Errorf("read %s: link %s: %w", path, k, err)
		}
	}
	return o, nil
}

// Decode reads an observation's JSON, refusing another schema version.
func Decode(r io.Reader) (*Observation, error) {
	var o Observation
	if err := json.NewDecoder(r).Decode(&o); err != nil {
		return nil, err
	}
	if o.Schema != SchemaVersion {
		return nil, fmt.Errorf("observation schema %d, this tfolab reads %d", o.Schema, SchemaVersion)
	}
	if o.Nodes == nil {
		o.Nodes = map[string]*Node{}
	}
	if o.Links == nil {
		o.Links = map[string]*Link{}
	}
	return &o, nil
}

// WritePcap writes the packets' raw frames to path (pcap, nanosecond
// timestamps, Ethernet), in order, so frame n is pkts[n-1].
func WritePcap(path string, pkts []capture.Packet) error {
	return capture.WritePcapFile(path, capture.DefaultSnapLen, true, len(pkts), func(i int) (gopacket.CaptureInfo, []byte, error) {
		p := pkts[i]
		if p.Frame == nil {
			return gopacket.CaptureInfo{}, nil, fmt.Errorf("write %s: packet %d has no raw frame (an observation read without its pcaps?)", path, i+1)
		}
		return gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Frame), Length: len(p.Frame)}, p.Frame, nil
	})
}

// attachFrames sets each packet's Frame from the pcap's frames, in order.
func attachFrames(path string, pkts []capture.Packet) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for i := range pkts {
		data, _, err := r.ReadPacketData()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%s: %d frames for %d packets", path, i, len(pkts))
			}
			return fmt.Errorf("%s: frame %d: %w", path, i, err)
		}
		pkts[i].Frame = data
	}
	return nil
}
