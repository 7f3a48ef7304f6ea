// Package cputime measures the CPU time of this process, so that benchmarks and
// evaluations on a shared, loaded machine can report cost independently of wall-clock
// waits (throughput per CPU-second as well as per second).
package cputime
