package netns

// sysSetns is setns(2); package syscall is frozen and lacks SYS_SETNS on
// 386.
const sysSetns = 346
