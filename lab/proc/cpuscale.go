package proc

import (
	"os"
	"strconv"
	"sync"
	"time"
)

// CPUScaleEnv names how many times slower this machine's CPU is than the
// one CPU budgets were set for. `tfolab report --kernel` sets it inside an
// emulated guest (TCG) from a measured ratio: the same CPU-bound workload
// timed on the host and in the guest (kernelvm.Calibrate). Unset, or below
// 1, budgets are as written.
const CPUScaleEnv = "TFOLAB_CPU_SCALE"

var cpuScale = sync.OnceValue(func() float64 {
	f, err := strconv.ParseFloat(os.Getenv(CPUScaleEnv), 64)
	if err != nil || f < 1 {
		return 1
	}
	return f
})

// ScaleCPU is a CPU budget on this machine: d times CPUScaleEnv.
func ScaleCPU(d time.Duration) time.Duration {
	return time.Duration(float64(d) * cpuScale())
}
