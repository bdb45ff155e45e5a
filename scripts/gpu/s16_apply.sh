# Sourced by the session 16 and 17 call scripts: sets, on the device's copy of the tree, each kernels/prism/chunk.py
# setting whose variable (s16_choose.py's output) is set and not empty; the others keep main's defaults.
C=kernels/prism/chunk.py
s16_set() { [ -n "$2" ] && sed -i "s/^$1.*/$1$2/" $C; }
s16_set "FWD_16: tuple = " "${S16_FWD16:-}"
s16_set "TR16_DOTS = " "${S16_TR16:-}"
s16_set "DOT16 = " "${S16_DOT16:-}"
s16_set "DH16_WY = " "${S16_DH16:-}"
s16_set "KEYS_VALUES_BS = " "${S16_VBS:-}"
s16_set "KEYS_COLUMNS_BS = " "${S16_CBS:-}"
s16_set "RB_D16 = " "${S16_RBD16:-}"
s16_set "WY_V1_16 = " "${S16_V116:-}"
s16_set "KEYS_VALUES_BV = " "${S16_VBV:-}"
s16_set "MAXNREG: dict = " "${S16_MAXNREG:-}"
s16_set "KEYS_ROWS_SPLIT = " "${S16_RSPLIT:-}"
grep -n "^FWD_16: tuple =\|^TR16_DOTS =\|^DOT16 =\|^DH16_WY =\|^KEYS_VALUES_BS =\|^KEYS_COLUMNS_BS =\|^RB_D16 =\|^WY_V1_16 =\|^KEYS_VALUES_BV =\|^MAXNREG: dict =\|^KEYS_ROWS_SPLIT =" $C
