#include "textflag.h"

// func rangeLines(start, lines uintptr)
TEXT ·rangeLines(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ start+0(FP), AX
	MOVQ lines+8(FP), CX
loop:
	PREFETCHT1 (AX)
	ADDQ $64, AX
	DECQ CX
	JNZ  loop
	RET
