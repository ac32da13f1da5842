package netns

// sysSetns is setns(2); package syscall is frozen and lacks SYS_SETNS on
// amd64.
const sysSetns = 308
