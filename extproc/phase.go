package extproc

import (
	"strconv"
	"time"
)

// Phase is the kind of an ext_proc message: which ProcessingRequest case carries it. Envoy
// sends them in this order, the trailers and bodies only when its processing mode asks.
type Phase uint8

// The phases, in the order Envoy sends them.
const (
	PhaseRequestHeaders Phase = iota
	PhaseRequestBody
	PhaseRequestTrailers
	PhaseResponseHeaders
	PhaseResponseBody
	PhaseResponseTrailers
	// NumPhases is not a phase: it counts them, so every Phase is below it and an array of
	// NumPhases elements is indexed by Phase.
	NumPhases
)

var phaseNames = [NumPhases]string{
	"request_headers", "request_body", "request_trailers",
	"response_headers", "response_body", "response_trailers",
}

// String returns the phase in snake case, as the ProcessingRequest field that carries it is
// named ("request_headers", …); the metrics use it as the phase label.
func (p Phase) String() string {
	if p < NumPhases {
		return phaseNames[p]
	}
	return "Phase(" + strconv.Itoa(int(p)) + ")"
}

// PhaseCounts counts messages per phase, indexed by Phase.
type PhaseCounts [NumPhases]uint64

// PhaseObserver receives the server's time per message. ObservePhase is called on the stream
// path and must not block.
type PhaseObserver interface {
	ObservePhase(p Phase, observability bool, d time.Duration)
}
