package capture

import (
	"bufio"
	"fmt"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// WritePcapFile writes n frames to path as a pcap file with link type
// Ethernet and snapLen: frame(i) gives the i-th frame's capture
// information and bytes, or an error that stops the writing. nanos picks
// nanosecond timestamps over the classic microseconds. A file that could
// not be written whole is removed, so no tool chokes on half of one.
func WritePcapFile(path string, snapLen uint32, nanos bool, n int, frame func(i int) (gopacket.CaptureInfo, []byte, error)) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	bw := bufio.NewWriter(f)
	w := pcapgo.NewWriter(bw)
	if nanos {
		w = pcapgo.NewWriterNanos(bw)
	}
	if err := w.WriteFileHeader(snapLen, layers.LinkTypeEthernet); err != nil {
		return fmt.Errorf("write header to %s: %w", path, err)
	}
	for i := range n {
		ci, data, err := frame(i)
		if err != nil {
			return err
		}
		if err := w.WritePacket(ci, data); err != nil {
			return fmt.Errorf("write frame %d to %s: %w", i, path, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("flush %s: %w", path, err)
	}
	return nil
}

// writePcap writes a capture's frames with their original timestamps
// (microseconds), each frame's length at least what was kept of it.
func writePcap(path string, snapLen uint32, frames []frame) error {
	return WritePcapFile(path, snapLen, false, len(frames), func(i int) (gopacket.CaptureInfo, []byte, error) {
		ci := frames[i].ci
		ci.CaptureLength = len(frames[i].data)
		if ci.Length < ci.CaptureLength {
			ci.Length = ci.CaptureLength
		}
		return ci, frames[i].data, nil
	})
}
