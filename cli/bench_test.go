package cli

import (
	"math"
	"os"
	"reflect"
	"testing"
	"time"
)

func TestScheduleKeepsThePairBackToBack(t *testing.T) {
	got := schedule(4, 4, [2]int{2, 3})
	want := [][]int{{0, 1, 2, 3}, {1, 3, 2, 0}, {2, 3, 0, 1}, {0, 1, 3, 2}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("schedule = %v, want %v", got, want)
	}
	// Without a pair every path rotates through every place.
	if got, want := schedule(3, 3, [2]int{-1, -1}), [][]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("schedule = %v, want %v", got, want)
	}
}

func TestPairedRatioIsTheMedianRound(t *testing.T) {
	on := benchResult{rounds: []float64{90, 100, 50, 99}}
	off := benchResult{rounds: []float64{100, 100, 100, 100}}
	med, lo, hi := pairedRatio(on, off)
	if math.Abs(med-0.945) > 1e-9 || lo != 0.5 || hi != 1 {
		t.Fatalf("pairedRatio = %v %v %v, want 0.945 0.5 1", med, lo, hi)
	}
	on.rounds = on.rounds[:3]
	if med, _, _ := pairedRatio(on, off); med != 0.9 {
		t.Fatalf("odd rounds: median %v, want 0.9", med)
	}
}

func TestProcCPUCountsThisProcess(t *testing.T) {
	before := procCPU(os.Getpid())
	deadline := time.Now().Add(60 * time.Millisecond)
	for n := 0; time.Now().Before(deadline); n++ {
		_ = n * n
	}
	if after := procCPU(os.Getpid()); after <= before {
		t.Fatalf("CPU time did not grow: %v then %v", before, after)
	}
	if procCPU(1<<30) != 0 {
		t.Fatal("a missing process has CPU time")
	}
}
