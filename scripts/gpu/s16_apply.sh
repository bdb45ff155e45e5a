# Sourced by session 16's call scripts: sets kernels/prism/chunk.py's FWD_16, TR16_DOTS, KEYS_VALUES_BS, KEYS_COLUMNS_BS and
# RB_D16 to $S16_FWD16, $S16_TR16, $S16_VBS, $S16_CBS, $S16_RBD16 (s16_choose.py's output), on the device's copy of the tree.
C=kernels/prism/chunk.py
sed -i "s/^FWD_16: tuple = .*/FWD_16: tuple = ${S16_FWD16:-()}/; s/^TR16_DOTS = .*/TR16_DOTS = ${S16_TR16:-False}/; s/^KEYS_VALUES_BS = .*/KEYS_VALUES_BS = ${S16_VBS:-None}/; s/^KEYS_COLUMNS_BS = .*/KEYS_COLUMNS_BS = ${S16_CBS:-None}/; s/^RB_D16 = .*/RB_D16 = ${S16_RBD16:-True}/" $C
grep -n "^FWD_16: tuple =\|^TR16_DOTS =\|^KEYS_VALUES_BS =\|^KEYS_COLUMNS_BS =\|^RB_D16 =" $C
