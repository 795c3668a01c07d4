package rpcguard

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/bufiox"
	"github.com/cloudwego/gopkg/protocol/ttheader"
	"github.com/cloudwego/netpoll"
)

func testStreams(t *testing.T, o StreamOptions) *Streams {
	t.Helper()
	s, err := NewStreams(o, testCodecService())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStreamOptionsAreChecked(t *testing.T) {
	for _, o := range []StreamOptions{
		{MaxFrameBytes: 0, InflightBytes: 10, Wait: time.Second},
		{MaxFrameBytes: 10, InflightBytes: 5, Wait: time.Second},
		{MaxFrameBytes: 10, InflightBytes: 10, Wait: 0},
	} {
		if _, err := NewStreams(o, testCodecService()); err == nil {
			t.Errorf("NewStreams(%+v) accepted", o)
		}
	}
}

// TestGateBoundsWhatAConnectionHolds charges and lets go a connection's bytes by stream.
func TestGateBoundsWhatAConnectionHolds(t *testing.T) {
	s := testStreams(t, StreamOptions{MaxFrameBytes: 10, InflightBytes: 20, Wait: 50 * time.Millisecond})
	g := newGate(s)
	if err := g.admit(1, 15); err != nil {
		t.Fatal(err)
	}
	// Over the bound: admitted once stream 1's message is taken.
	admitted := make(chan error, 1)
	go func() { admitted <- g.admit(2, 10) }()
	g.release(1, 15)
	if err := <-admitted; err != nil {
		t.Fatal(err)
	}
	if s.Inflight() != 10 || s.Peak() != 15 {
		t.Fatalf("inflight %d, peak %d; want 10 and 15", s.Inflight(), s.Peak())
	}
	// Over the bound with nobody taking anything: refused after Wait.
	if err := g.admit(3, 11); err == nil || !strings.Contains(err.Error(), "unread") {
		t.Fatalf("admit over the bound: %v; want a refusal after the wait", err)
	}
	// A release never lets go more than the stream was charged.
	g.release(2, 1000)
	if s.Inflight() != 0 {
		t.Fatalf("inflight %d after stream 2's release; want 0", s.Inflight())
	}
	// An ended stream's bytes are let go, and frames still arriving for it are not charged
	// (ttstream drops them).
	if err := g.admit(4, 8); err != nil {
		t.Fatal(err)
	}
	g.end(4)
	if err := g.admit(4, 20); err != nil || s.Inflight() != 0 {
		t.Fatalf("a frame of an ended stream: %v, inflight %d; want not charged", err, s.Inflight())
	}
	// A closed connection lets go of everything.
	if err := g.admit(5, 9); err != nil {
		t.Fatal(err)
	}
	g.close()
	if s.Inflight() != 0 {
		t.Fatalf("inflight %d after close; want 0", s.Inflight())
	}
}

// frameHead is the fixed TTHeader head of a frame of length bytes (after the length itself)
// on stream sid with a header of words 4-byte words.
func frameHead(length uint32, sid uint32, words uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, 0x10, 0x00, 0x00, 0x02)
	b = binary.BigEndian.AppendUint32(b, sid)
	return binary.BigEndian.AppendUint16(b, words)
}

// TestGatedReaderChargesEachFramesPayload reads two frames through the gate: each frame's
// payload (its length less the TTHeader head and header) is charged to its stream, and a frame
// over MaxFrameBytes is refused before it is read.
func TestGatedReaderChargesEachFramesPayload(t *testing.T) {
	s := testStreams(t, StreamOptions{MaxFrameBytes: 100, InflightBytes: 1000, Wait: time.Second})
	buf := netpoll.NewLinkBuffer()
	// Frame 1: stream 7, a header of 1 word, 20 bytes of payload: length 10 + 4 + 20.
	frame := append(frameHead(34, 7, 1), make([]byte, 24)...)
	// Frame 2: stream 9, declaring 1000 bytes.
	frame = append(frame, frameHead(1000, 9, 1)...)
	if _, err := buf.WriteBinary(frame); err != nil {
		t.Fatal(err)
	}
	if err := buf.Flush(); err != nil {
		t.Fatal(err)
	}
	r := &gatedReader{Reader: buf, gate: newGate(s)}
	if _, err := r.Next(38); err != nil {
		t.Fatal(err)
	}
	if s.Inflight() != 20 || r.gate.held[7] != 20 {
		t.Fatalf("inflight %d (stream 7: %d); want 20", s.Inflight(), r.gate.held[7])
	}
	if _, err := r.Peek(4); err == nil || !strings.Contains(err.Error(), "over the limit of 100 bytes") {
		t.Fatalf("the oversized frame: %v; want refused", err)
	}
}

// streamFrame is a TTHeader streaming frame of type typ on stream sid with payload.
func streamFrame(t *testing.T, typ string, sid int32, payload []byte) []byte {
	t.Helper()
	var b []byte
	w := bufiox.NewBytesWriter(&b)
	lenField, err := ttheader.Encode(context.Background(), ttheader.EncodeParam{Flags: ttheader.HeaderFlagsStreaming, SeqID: sid,
		IntInfo: map[uint16]string{ttheader.FrameType: typ}}, w)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteBinary(payload); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(lenField, uint32(len(b)-4))
	return b
}

// TestGatedReaderReopensAStreamID: frames still arriving for an ended stream are not charged
// (ttstream drops them), but a header frame opening a stream on that id again makes its frames
// charged again, so no client escapes the bound by reusing ids.
func TestGatedReaderReopensAStreamID(t *testing.T) {
	s := testStreams(t, StreamOptions{MaxFrameBytes: 1000, InflightBytes: 1000, Wait: time.Second})
	buf := netpoll.NewLinkBuffer()
	frames := [][]byte{
		streamFrame(t, ttheader.FrameTypeData, 3, make([]byte, 50)), // after stream 3 ended: not charged
		streamFrame(t, ttheader.FrameTypeHeader, 3, nil),            // stream 3 again
		streamFrame(t, ttheader.FrameTypeData, 3, make([]byte, 60)), // charged
	}
	for _, f := range frames {
		if _, err := buf.WriteBinary(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := buf.Flush(); err != nil {
		t.Fatal(err)
	}
	r := &gatedReader{Reader: buf, gate: newGate(s)}
	r.gate.end(3)
	for i, f := range frames {
		if _, err := r.Next(len(f)); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if want := []int64{0, 0, 60}[i]; s.Inflight() != want {
			t.Fatalf("after frame %d: inflight %d; want %d", i, s.Inflight(), want)
		}
	}
}
