#include "textflag.h"

// func rangeLines(start, lines uintptr)
TEXT ·rangeLines(SB), NOSPLIT|NOFRAME, $0-16
	MOVD start+0(FP), R0
	MOVD lines+8(FP), R1
loop:
	PRFM (R0), PLDL2KEEP
	ADD  $64, R0
	SUBS $1, R1
	BNE  loop
	RET
